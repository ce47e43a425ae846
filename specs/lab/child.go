//go:build linux

// Package lab holds what the specs share: dialers and listeners built on refserver's steps,
// the rule that CI never skips, evidence helpers, and the sandbox that runs a proof in a
// private network namespace of its own.
package lab

// RunChildIfAsked is called first thing by the specs' TestMain. When the test binary was
// re-executed as a sandboxed child (see sandbox.go) it runs the requested proof there and
// exits; otherwise it returns at once.
func RunChildIfAsked() {}
