//go:build linux

// Package netns puts a child process in a network namespace of its own, for the specs'
// sandbox (specs/lab) and for the benchmark (bench/): a private loopback, private net.*
// sysctls and counters, and nothing left behind on the host (no TIME_WAIT sockets, no ports
// in use) once the namespace's last process has exited.
//
// A namespace is a property of a thread, and the Go scheduler moves goroutines between
// threads, while /proc/sys/net shows the namespace of the thread that reads it and /proc/net
// (/proc/self/net) that of the main thread. The one arrangement where every goroutine, every
// counter and every sysctl agree is a whole process created inside the new namespace: the
// program re-executes itself (/proc/self/exe) with clone flags that create one.
package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kind is one way to get a private network namespace.
type Kind struct {
	Name string // "netns" (root: a network namespace alone) or "userns+netns" (unprivileged)
	attr func() *syscall.SysProcAttr
}

// Kinds are the ways there are, in the order to try them.
var Kinds = []Kind{
	{"netns", func() *syscall.SysProcAttr {
		// clone(CLONE_NEWNET) needs CAP_SYS_ADMIN in the current user namespace: root, and
		// not a container's root that was denied it. EPERM otherwise.
		return &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET}
	}},
	{"userns+netns", func() *syscall.SysProcAttr {
		// A new user namespace first, where the caller's uid becomes 0 with every
		// capability over namespaces the new one owns: the network namespace created in
		// the same clone is one. setgroups must be denied before an unprivileged gid_map
		// write (user_namespaces(7)); Go does it when GidMappingsEnableSetgroups is false.
		// Disabled user namespaces fail the clone with EPERM (kernel.unprivileged_userns_clone=0)
		// or ENOSPC (user.max_user_namespaces=0).
		return &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		}
	}},
}

// Command is this program run again with args, in a new namespace of kind k; ctx kills it.
// The child gets SIGKILL when the thread that started it exits (Pdeathsig is a thread's, not
// the process's), so the caller keeps its goroutine on that thread (runtime.LockOSThread)
// until the child has exited: otherwise the runtime may retire the thread under the child.
func (k Kind) Command(ctx context.Context, args ...string) *exec.Cmd {
	// /proc/self/exe rather than os.Args[0]: go test starts a test binary by a path that may
	// be relative to a directory the test has since left.
	cmd := exec.CommandContext(ctx, "/proc/self/exe", args...)
	cmd.Args[0] = os.Args[0]
	cmd.SysProcAttr = k.attr()
	cmd.SysProcAttr.Pdeathsig = unix.SIGKILL
	return cmd
}

// ErrRefused says this process may create no network namespace: not root (CAP_SYS_ADMIN),
// and no unprivileged user namespace either.
var ErrRefused = errors.New("no private network namespace allowed here")

// RefusedError is ErrRefused with the errno each kind was refused with.
type RefusedError struct {
	Refusals []string // "netns: EPERM", one per kind
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%v (%s)", ErrRefused, strings.Join(e.Refusals, "; "))
}

func (e *RefusedError) Unwrap() error { return ErrRefused }

// First calls try with each kind in turn, until one is not refused, and returns that kind
// with try's answer: nil, or an error that is not a refusal. When every kind was refused the
// error is a *RefusedError.
func First(try func(Kind) error) (Kind, error) {
	var refusals []string
	for _, k := range Kinds {
		err := try(k)
		errno, refused := Refused(err)
		if !refused {
			return k, err
		}
		refusals = append(refusals, fmt.Sprintf("%s: %s", k.Name, unix.ErrnoName(errno)))
	}
	return Kind{}, &RefusedError{Refusals: refusals}
}

// Refused tells whether err carries an errno by which a kernel, a security module or a
// container runtime says no to a namespace: EPERM and EACCES (a capability or a policy),
// ENOSPC and EUSERS (a namespace count limit), EINVAL (a kernel built without the namespace).
func Refused(err error) (unix.Errno, bool) {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return 0, false
	}
	switch errno {
	case unix.EPERM, unix.EACCES, unix.ENOSPC, unix.EUSERS, unix.EINVAL:
		return errno, true
	}
	return errno, false
}
