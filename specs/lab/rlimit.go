//go:build linux

package lab

import (
	"os"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// SetDescriptorLimit sets RLIMIT_NOFILE with setrlimit(2): soft is where open, socket and
// accept4 start failing with EMFILE (no free descriptor number below it), hard the ceiling
// of soft. The kernel answers EINVAL when soft > hard, and EPERM when hard rises above the
// current hard limit without CAP_SYS_RESOURCE in the initial user namespace (a user
// namespace's root does not have it for this) or above fs.nr_open whoever asks.
//
// It changes the whole process: call it in a sandbox child. The Go runtime raised the soft
// limit at start-up, to one below the hard limit (syscall/rlimit.go; hard-1 so that a later
// prlimit from outside shows), and os/exec gives a program it starts the soft limit the
// process started with; x/sys's Setrlimit goes through syscall.Setrlimit, which ends that,
// so a program the child starts inherits this limit.
func SetDescriptorLimit(soft, hard uint64) error {
	return os.NewSyscallError("setrlimit RLIMIT_NOFILE", unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: soft, Max: hard}))
}

// SetDescriptorSoftLimit lowers (or raises, up to the hard limit) the soft RLIMIT_NOFILE,
// keeping the hard one.
func SetDescriptorSoftLimit(soft uint64) error {
	_, hard, err := sock.DescriptorLimit()
	if err != nil {
		return err
	}
	return SetDescriptorLimit(soft, hard)
}
