//go:build linux

package lab_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/lab"
)

// descriptorsSeen is what a child under a low RLIMIT_NOFILE saw.
type descriptorsSeen struct {
	Soft     uint64 // RLIMIT_NOFILE as the child read it
	Sockets  int    // socket(2) calls that succeeded before the refusal
	Errno    string // the refusal
	Full     bool   // every descriptor number below Soft was open then
	SoftHigh string // setrlimit with soft above hard
}

var exhaustDescriptors = lab.RegisterChild("test.emfile", func(struct{}) (descriptorsSeen, error) {
	var seen descriptorsSeen
	soft, hard, err := sock.DescriptorLimit()
	if err != nil {
		return seen, err
	}
	seen.Soft = soft
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for attempt := 0; attempt < 1000; attempt++ {
		fd, err := sock.Socket(unix.AF_INET)
		if err != nil {
			seen.Errno = sock.ErrnoName(err)
			break
		}
		fds = append(fds, fd)
	}
	seen.Sockets = len(fds)
	seen.Full = true
	for fd := 0; fd < int(soft); fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			seen.Full = false
		}
	}
	seen.SoftHigh = sock.ErrnoName(lab.SetDescriptorLimit(hard+1, hard))
	return seen, nil
})

func TestRlimitNofileInTheChild(t *testing.T) {
	requireSandbox(t)
	soft, hard, err := sock.DescriptorLimit()
	if err != nil {
		t.Fatal(err)
	}
	seen, err := exhaustDescriptors.Run(struct{}{}, lab.SandboxOptions{NoFile: 32})
	if err != nil {
		t.Fatal(err)
	}
	if seen.Soft != 32 {
		t.Errorf("the child's soft RLIMIT_NOFILE is %d, want 32", seen.Soft)
	}
	// The kernel refuses a descriptor when no number below the soft limit is free; the
	// sockets filled what stdio, the result pipe and the Go runtime left.
	if seen.Errno != "EMFILE" || !seen.Full || seen.Sockets == 0 || seen.Sockets >= 32 {
		t.Errorf("want EMFILE once descriptors 0-31 are all open, got %+v", seen)
	}
	if seen.SoftHigh != "EINVAL" {
		t.Errorf("setrlimit with soft above hard: %q, want EINVAL", seen.SoftHigh)
	}
	if s, h, _ := sock.DescriptorLimit(); s != soft || h != hard {
		t.Errorf("the test process's RLIMIT_NOFILE changed: %d/%d, was %d/%d", s, h, soft, hard)
	}
	t.Logf("RLIMIT_NOFILE 32: %d sockets, then %s; the test process keeps %d/%d", seen.Sockets, seen.Errno, soft, hard)
}

func TestSetDescriptorLimitKeepsTheKernelsErrno(t *testing.T) {
	// soft above hard is refused before anything changes, so the test process is safe.
	_, hard, err := sock.DescriptorLimit()
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.SetDescriptorLimit(hard, hard-1); !errors.Is(err, unix.EINVAL) {
		t.Errorf("setrlimit(%d, %d): want EINVAL, got %v", hard, hard-1, err)
	}
}
