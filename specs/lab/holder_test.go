//go:build linux

package lab_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/lab"
)

// sendSockets makes n TCP sockets, passes them to the holder at path and closes its own
// copies; it returns how many descriptors it had open before and after.
func sendSockets(path string, n int) (before, after int, err error) {
	s, err := lab.SendTo(path)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	if before, err = sock.OpenDescriptors(); err != nil {
		return 0, 0, err
	}
	fds := make([]int, 0, n)
	defer func() { lab.CloseAll(fds) }()
	for range n {
		fd, err := sock.Socket(unix.AF_INET)
		if err != nil {
			return before, 0, err
		}
		fds = append(fds, fd)
	}
	if err := s.Send(fds); err != nil {
		return before, 0, err
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	fds = fds[:0]
	after, err = sock.OpenDescriptors()
	return before, after, err
}

var sendFromSandbox = lab.RegisterChild("test.holder", func(path string) ([2]int, error) {
	before, after, err := sendSockets(path, 600)
	return [2]int{before, after}, err
})

func TestHolderKeepsWhatASandboxChildPasses(t *testing.T) {
	requireSandbox(t)
	mine, err := sock.OpenDescriptors()
	if err != nil {
		t.Fatal(err)
	}
	h, err := lab.HoldDescriptors(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	counts, err := sendFromSandbox.Run(h.Path, lab.SandboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	held, err := h.Wait(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// 600 in three messages of at most 253: each one whole.
	if held != 600 {
		t.Errorf("held %d at most; want the 600 the child passed", held)
	}
	if counts[1] != counts[0] {
		t.Errorf("the child had %d descriptors open, then %d once it passed and closed its 600",
			counts[0], counts[1])
	}
	if now, _ := sock.OpenDescriptors(); now != mine {
		t.Errorf("%d descriptors open after Wait; %d before the holder", now, mine)
	}
}

func TestHolderInOneProcess(t *testing.T) {
	h, err := lab.HoldDescriptors(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, _, err := sendSockets(h.Path, 254); err != nil {
		t.Fatal(err)
	}
	held, err := h.Wait(5 * time.Second)
	if err != nil || held != 254 {
		t.Errorf("held %d, %v; want 254", held, err)
	}
}

// TestCloseAll: every descriptor of the list is closed, and none other.
func TestCloseAll(t *testing.T) {
	var fds []int
	for range 3 {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	keep, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(keep)
	lab.CloseAll(fds)
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
			t.Errorf("descriptor %d after CloseAll: %v, want EBADF", fd, err)
		}
	}
	if _, err := unix.FcntlInt(uintptr(keep), unix.F_GETFD, 0); err != nil {
		t.Errorf("descriptor %d, not in the list: %v", keep, err)
	}
}
