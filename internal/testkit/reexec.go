package testkit

import "os"

// ChildEnv is the environment for a test binary a test starts again as a child: this
// process's, the variables of vars ("NAME=value"), and GORACE with atexit_sleep_ms=0. A
// binary built with -race sleeps atexit_sleep_ms (1 s by default) on its way out, so that a
// race report can be flushed; a child's exit would take that second, and a test that times
// the exit would measure it.
func ChildEnv(vars ...string) []string {
	env := append(os.Environ(), vars...)
	return append(env, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
}
