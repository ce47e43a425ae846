//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A process's descriptors are bounded by RLIMIT_NOFILE, and a connection made and accepted
// in one process costs it two: one for each end. A proof that needs more connections than
// half that limit keeps one end of each in another process. The sender passes descriptors
// over a Unix socket (SCM_RIGHTS, unix(7)) and closes its own copies; the holder keeps them
// open, and the sockets stay as they were, until the sender hangs up. The socket has a path
// in the file system, so that a sandbox child reaches it from its own network namespace: an
// abstract Unix address belongs to a network namespace, a path does not.

// maxRights is how many descriptors one message carries at most: SCM_MAX_FD is 253
// (include/net/scm.h); more in one message fails with EINVAL.
const maxRights = 253

// Holder keeps the descriptors a Sender passes it, until the sender hangs up.
type Holder struct {
	Path string // the Unix socket's path, for SendTo

	dir      string
	listener int
	done     chan struct{} // closed once the descriptors held are closed again
	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	peak     int // the most descriptors held at once
	err      error
}

// HoldDescriptors listens on a Unix socket in a new temporary directory, and holds what the
// first sender to connect passes, at most within from now: then it closes all it holds.
func HoldDescriptors(within time.Duration) (*Holder, error) {
	dir, err := os.MkdirTemp("", "portproof-holder-")
	if err != nil {
		return nil, err
	}
	h := &Holder{Path: filepath.Join(dir, "s"), dir: dir,
		done: make(chan struct{}), stop: make(chan struct{})}
	// SOCK_SEQPACKET keeps each message whole, its descriptors with it.
	typ := unix.SOCK_SEQPACKET | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	h.listener, err = unix.Socket(unix.AF_UNIX, typ, 0)
	if err == nil {
		if err = unix.Bind(h.listener, &unix.SockaddrUnix{Name: h.Path}); err == nil {
			err = unix.Listen(h.listener, 1)
		}
	}
	if err != nil {
		if h.listener >= 0 {
			unix.Close(h.listener)
		}
		os.RemoveAll(dir)
		return nil, fmt.Errorf("holder on %s: %w", h.Path, err)
	}
	go h.hold(time.Now().Add(within))
	return h, nil
}

// hold takes one sender and keeps what it passes until it hangs up, the deadline passes or
// Close is called; then it closes everything.
func (h *Holder) hold(deadline time.Time) {
	defer close(h.done)
	var held []int
	defer func() { CloseAll(held) }()
	if _, err := h.await(h.listener, deadline); err != nil {
		h.err = err
		return
	}
	conn, _, err := unix.Accept4(h.listener, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		h.err = os.NewSyscallError("accept4", err)
		return
	}
	defer unix.Close(conn)
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(maxRights*4))
	for {
		if _, err := h.await(conn, deadline); err != nil {
			h.err = err
			return
		}
		n, oobn, flags, _, err := unix.Recvmsg(conn, buf, oob, unix.MSG_CMSG_CLOEXEC)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			h.err = os.NewSyscallError("recvmsg", err)
			return
		case n == 0 && oobn == 0:
			return // the sender hung up
		case flags&unix.MSG_CTRUNC != 0:
			// The kernel closed what did not fit: our own RLIMIT_NOFILE, most likely.
			h.err = errors.New("recvmsg: descriptors truncated (MSG_CTRUNC)")
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			h.err = err
			return
		}
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				h.err = err
				return
			}
			held = append(held, fds...)
		}
		h.peak = max(h.peak, len(held))
	}
}

// await polls fd for input (or a hang-up) until the deadline, or until Close.
func (h *Holder) await(fd int, deadline time.Time) (bool, error) {
	for {
		select {
		case <-h.stop:
			return false, errors.New("holder closed")
		default:
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, errors.New("holder: the sender did not hang up in time")
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(min(left, 50*time.Millisecond)/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false, os.NewSyscallError("poll", err)
		}
		if n > 0 {
			return true, nil
		}
	}
}

// Wait waits, at most within, for the sender to hang up and the descriptors it passed to be
// closed again, and returns how many were held at most at once.
func (h *Holder) Wait(within time.Duration) (int, error) {
	select {
	case <-h.done:
	case <-time.After(within):
		return 0, errors.New("holder: the sender has not hung up")
	}
	h.Close()
	return h.peak, h.err
}

// Close stops holding: what is held is closed, and the socket and its directory removed.
func (h *Holder) Close() error {
	h.stopOnce.Do(func() {
		close(h.stop)
		<-h.done
		unix.Close(h.listener)
		os.RemoveAll(h.dir)
	})
	return nil
}

// Sender passes descriptors to a Holder.
type Sender struct{ fd int }

// SendTo connects to the holder listening at path.
func SendTo(path string) (*Sender, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", path, err)
	}
	return &Sender{fd: fd}, nil
}

// Send passes fds, maxRights per message. The holder has its own descriptors for the same
// sockets once Send returns; the caller may close its own.
func (s *Sender) Send(fds []int) error {
	for len(fds) > 0 {
		n := min(len(fds), maxRights)
		if err := unix.Sendmsg(s.fd, []byte{0}, unix.UnixRights(fds[:n]...), nil, 0); err != nil {
			return os.NewSyscallError("sendmsg", err)
		}
		fds = fds[n:]
	}
	return nil
}

// Close hangs up: the holder closes what it holds.
func (s *Sender) Close() error { return os.NewSyscallError("close", unix.Close(s.fd)) }
