//go:build linux

// Package lab holds what the specs share: dialers and listeners built on refserver's steps,
// the rule that CI never skips, evidence helpers, and the sandbox that runs a proof in a
// private network namespace of its own.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"portproof/internal/netns"
)

// RunChildIfAsked is called first thing by the specs' TestMain. When the test binary was
// re-executed as a sandboxed child (see sandbox.go) it runs the requested proof there and
// exits; otherwise it returns at once.
func RunChildIfAsked() {
	hookCalled.Store(true)
	if os.Getenv(childEnv) == "" {
		return
	}
	inChild.Store(true)
	// A function that starts the test binary again must not make another child by accident.
	os.Unsetenv(childEnv)
	resp := serveChild(os.Stdin)
	out := os.NewFile(resultFD, "sandbox result")
	if err := json.NewEncoder(out).Encode(resp); err != nil {
		fmt.Fprintf(os.Stderr, "lab: sandbox child: writing the result: %v\n", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// serveChild reads the request, sets the sandbox up and runs the registered function.
func serveChild(in io.Reader) childResponse {
	var req childRequest
	if err := json.NewDecoder(io.LimitReader(in, maxMessage)).Decode(&req); err != nil {
		return childFailure(fmt.Errorf("reading the request: %w", err))
	}
	childRegistry.Lock()
	fn := childRegistry.fns[req.Name]
	childRegistry.Unlock()
	if fn == nil {
		return childFailure(fmt.Errorf("no child registered as %q in this binary", req.Name))
	}
	if err := setUpSandbox(req); err != nil {
		return childFailure(fmt.Errorf("sandbox setup: %w", err))
	}
	result, err := callChild(fn, req.Arg)
	if err != nil {
		return childFailure(err)
	}
	b, err := json.Marshal(result)
	if err != nil {
		return childFailure(fmt.Errorf("encoding the result: %w", err))
	}
	return childResponse{Result: b}
}

// setUp makes the namespace the proof expects, in an order that matters: nothing is written
// before the namespace is known to be a new one, and the descriptor limit comes last, since
// the setup itself opens descriptors.
func setUpSandbox(req childRequest) error {
	own, err := netnsOf("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	if own == req.HostNetNS {
		return fmt.Errorf("still in the host's network namespace (net:[%d]): refusing to write a sysctl or touch lo", own.Ino)
	}
	if err := netns.Setup(req.Sysctls); err != nil {
		return err
	}
	if req.NoFile > 0 {
		// The Go runtime creates its own epoll instance and eventfd (netpollinit) the first
		// time a timer is set; under a full descriptor table that epoll_create1 fails with
		// EMFILE and the runtime aborts the process ("netpollinit failed") at the GC's next
		// timer. Setting one now makes it take them while there is room.
		time.AfterFunc(time.Hour, func() {}).Stop()
		if err := SetDescriptorSoftLimit(req.NoFile); err != nil {
			return err
		}
	}
	return nil
}

// call runs fn, turning a panic into an error with its stack, since the child has no test
// framework to report it.
func callChild(fn func(json.RawMessage) (any, error), arg json.RawMessage) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return fn(arg)
}

func childFailure(err error) childResponse {
	resp := childResponse{Error: err.Error()}
	errors.As(err, &resp.Errno)
	return resp
}
