// Package netns runs a benchmark inside a network namespace of its own: the program
// re-executes itself with CLONE_NEWNET, so that every server and client it starts shares a
// private loopback, with private sysctls, and leaves nothing behind on the host (no
// TIME_WAIT sockets, no ports in use) once its last process has exited.
//
// A namespace is a property of a thread, and the Go scheduler moves goroutines between
// threads; a whole process created inside the namespace is the one arrangement where every
// goroutine, every child and /proc/net agree (as in specs/lab/sandbox.go).
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const envInside = "PORTPROOF_BENCH_NETNS"

// ErrRefused says this process may create no network namespace: not root (CAP_SYS_ADMIN),
// and no unprivileged user namespace either.
var ErrRefused = errors.New("no private network namespace allowed here")

// Inside reports whether this process is the re-executed one, inside its namespace.
func Inside() bool { return os.Getenv(envInside) != "" }

// Reexec runs this program again, with the same arguments, in a new network namespace
// (CLONE_NEWNET as root, else a user namespace that owns one), waits for it and returns its
// exit code and the namespace's name as /proc/PID/ns/net spells it ("net:[4026532...]").
// SIGINT reaches the child from the terminal; SIGTERM is passed on.
func Reexec() (code int, ns string, err error) {
	kinds := []*syscall.SysProcAttr{
		{Cloneflags: unix.CLONE_NEWNET},
		{Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}},
	}
	// Pdeathsig fires when the forking thread exits: keep this goroutine on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	signal.Ignore(unix.SIGINT) // the child gets the terminal's SIGINT and cleans up
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGTERM)
	defer signal.Stop(sig)
	var refusals []string
	for _, attr := range kinds {
		cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
		cmd.Args[0] = os.Args[0]
		cmd.Env = append(os.Environ(), envInside+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		attr.Pdeathsig = unix.SIGKILL
		cmd.SysProcAttr = attr
		if err := cmd.Start(); err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) && (errno == unix.EPERM || errno == unix.EACCES || errno == unix.ENOSPC || errno == unix.EINVAL || errno == unix.EUSERS) {
				refusals = append(refusals, unix.ErrnoName(errno))
				continue
			}
			return 1, "", err
		}
		ns, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		for {
			select {
			case s := <-sig:
				cmd.Process.Signal(s)
				continue
			case err := <-done:
				if cmd.ProcessState != nil {
					return cmd.ProcessState.ExitCode(), ns, nil
				}
				return 1, ns, err
			}
		}
	}
	return 1, "", fmt.Errorf("%w (%s)", ErrRefused, strings.Join(refusals, ", "))
}

// Setup prepares the namespace from inside: lo up (which gives it 127.0.0.0/8, so that
// 127.0.0.2 and the rest are source addresses at once), then the sysctls, read back.
func Setup(sysctls map[string]string) error {
	if err := loopbackUp(); err != nil {
		return err
	}
	for name, value := range sysctls {
		path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("sysctl %s=%q: %w", name, value, err)
		}
	}
	return nil
}

// Sysctl reads a setting of this process's namespace.
func Sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// loopbackUp sets IFF_UP on lo (SIOCGIFFLAGS, SIOCSIFFLAGS): a new namespace's lo is down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS lo", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return os.NewSyscallError("ioctl SIOCSIFFLAGS lo", unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr))
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
