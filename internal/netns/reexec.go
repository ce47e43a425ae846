//go:build linux

package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// A whole program in a namespace of its own, as the benchmark runs: the program calls
// Reexec, and its copy inside (Inside) calls Setup and does the work.

const envInside = "PORTPROOF_BENCH_NETNS"

// Inside reports whether this process is the re-executed one, inside its namespace.
func Inside() bool { return os.Getenv(envInside) != "" }

// Reexec runs this program again, with the same arguments and standard streams, in a new
// network namespace of the first kind allowed, waits for it and returns its exit code and
// the namespace's name as /proc/PID/ns/net spells it ("net:[4026532...]"). SIGINT reaches
// the child from the terminal; SIGTERM is passed on. An error that wraps ErrRefused means no
// kind was allowed.
func Reexec() (code int, ns string, err error) {
	runtime.LockOSThread() // for Pdeathsig: see Command
	defer runtime.UnlockOSThread()
	signal.Ignore(unix.SIGINT) // the child gets the terminal's SIGINT and cleans up
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGTERM)
	defer signal.Stop(sig)
	var cmd *exec.Cmd
	if _, err := First(func(k Kind) error {
		cmd = k.Command(context.Background(), os.Args[1:]...)
		cmd.Env = append(os.Environ(), envInside+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		return cmd.Start()
	}); err != nil {
		return 1, "", err
	}
	ns, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sig:
			cmd.Process.Signal(s)
		case err := <-done:
			if cmd.ProcessState != nil {
				return cmd.ProcessState.ExitCode(), ns, nil
			}
			return 1, ns, err
		}
	}
}

// Holders lists the processes whose network namespace is ns: none, once a namespace is
// gone (nothing else, a bind mount under /run/netns say, holds an anonymous one).
func Holders(ns string) []int {
	var pids []int
	links, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, l := range links {
		if t, err := os.Readlink(l); err == nil && t == ns {
			var pid int
			fmt.Sscanf(strings.TrimPrefix(l, "/proc/"), "%d", &pid)
			pids = append(pids, pid)
		}
	}
	return pids
}
