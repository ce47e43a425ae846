//go:build linux

package sock

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The four steps of a TCP server, one system call each, in the order a server makes them.
// Each returns the kernel's errno wrapped in an *os.SyscallError, so errors.Is(err,
// unix.EADDRINUSE) works and the message names the call that failed.

// --8<-- [start:socket]

// Socket is step 1, socket(2): a TCP endpoint with no address yet. Until bind or connect
// it is neither passive nor active; it is only a descriptor.
func Socket(family int) (int, error) {
	// SOCK_NONBLOCK: every descriptor here is driven by epoll, and no call may block a loop.
	// SOCK_CLOEXEC: a program we exec must not inherit the socket and hold the port open.
	typ := unix.SOCK_STREAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	fd, err := unix.Socket(family, typ, unix.IPPROTO_TCP)
	return fd, os.NewSyscallError("socket", err)
}

// --8<-- [end:socket]

// --8<-- [start:bind]

// Bind is step 2, bind(2): claim a local address and port. Port 0 asks the kernel to choose
// one from net.ipv4.ip_local_port_range; getsockname tells which. This is where "port in use"
// shows up: EADDRINUSE when another socket holds the same address and port (or the wildcard
// address and the port), unless both sides opted in with SO_REUSEPORT.
func Bind(fd int, ap netip.AddrPort) error {
	sa, err := Sockaddr(ap)
	if err != nil {
		return err
	}
	return os.NewSyscallError("bind", unix.Bind(fd, sa))
}

// --8<-- [end:bind]

// --8<-- [start:listen]

// Listen is step 3, listen(2): the socket becomes passive. From now on the kernel completes
// handshakes on its own and queues the connections, up to backlog+1 of them; a backlog above
// net.core.somaxconn (4096 by default since Linux 5.4) is cut to it without an error.
// AcceptQueueOf reads back the limit the kernel really applied.
func Listen(fd, backlog int) error {
	return os.NewSyscallError("listen", unix.Listen(fd, backlog))
}

// --8<-- [end:listen]

// --8<-- [start:accept]

// Accept is step 4, accept4(2): take the oldest finished connection off the listener's
// queue and return a new descriptor for it, an active socket, with the peer's address. The
// handshake happened before this call; accept only hands the connection to the process.
//
// With a non-blocking listener an empty queue is EAGAIN. EMFILE (the process's
// RLIMIT_NOFILE) and ENFILE (the system's fs.file-max) leave the connection in the queue:
// the kernel sends the client nothing, which is why accept.go keeps a spare descriptor.
func Accept(listener int) (fd int, peer netip.AddrPort, err error) {
	// The flags are set in the same syscall so that no other thread's fork+exec can inherit
	// the descriptor between accept and a later fcntl.
	fd, peer, errno := accept4(listener, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	switch {
	case errno == unix.EAGAIN:
		return -1, peer, errno // the queue is drained, the common case: nothing to allocate
	case errno != 0:
		return -1, peer, os.NewSyscallError("accept4", errno)
	}
	return fd, peer, nil
}

// --8<-- [end:accept]

// --8<-- [start:connect]

// Connect is the client's step, connect(2): the active open. Unless the socket was bound,
// the kernel picks the source port here, one not already used toward this destination. On a
// non-blocking socket the handshake goes on after connect returns EINPROGRESS; Connect waits
// for it, at most timeout, and returns what SO_ERROR says of it. EADDRNOTAVAIL comes at once,
// from connect itself, when no source port is left for the 4-tuple.
func Connect(fd int, ap netip.AddrPort, timeout time.Duration) error {
	sa, err := Sockaddr(ap)
	if err != nil {
		return err
	}
	err = unix.Connect(fd, sa)
	if !errors.Is(err, unix.EINPROGRESS) {
		return os.NewSyscallError("connect", err)
	}
	// Writable means the handshake ended, either way; SO_ERROR says which.
	if err := WaitFor(fd, unix.POLLOUT, timeout); errors.Is(err, unix.ETIMEDOUT) {
		return os.NewSyscallError("connect", unix.ETIMEDOUT)
	} else if err != nil {
		return err
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt SO_ERROR", err)
	}
	if soerr != 0 {
		return os.NewSyscallError("connect", unix.Errno(soerr))
	}
	return nil
}

// --8<-- [end:connect]

// --8<-- [start:options]

// --8<-- [start:reuseaddr]

// SetReuseAddr sets SO_REUSEADDR before bind. For a listener it lets a restarted server bind
// its port while connections of the previous run linger in TIME_WAIT. It does not let two
// listeners share an address and port: that is SO_REUSEPORT.
func SetReuseAddr(fd int) error {
	return setsockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, "SO_REUSEADDR", true)
}

// --8<-- [end:reuseaddr]

// SetReusePort sets SO_REUSEPORT before bind: every socket that sets it, owned by the same
// user, may bind the same address and port. For listeners the kernel then spreads incoming
// connections over the group by a hash of the 4-tuple.
func SetReusePort(fd int) error {
	return setsockopt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, "SO_REUSEPORT", true)
}

// --8<-- [start:nodelay]

// SetNoDelay sets TCP_NODELAY on a connection: every write goes out at once. Without it
// Nagle's algorithm holds a segment shorter than the MSS (the tail of a 64 KiB echo, say)
// until the peer has acknowledged what went before. Go's net and gnet set it by default.
func SetNoDelay(fd int) error {
	return setsockopt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, "TCP_NODELAY", true)
}

// --8<-- [end:nodelay]

// SetV6Only sets IPV6_V6ONLY on an AF_INET6 socket before bind. Off (the default of
// net.ipv6.bindv6only=0), a socket bound to [::]:P also takes IPv4 connections to port P, as
// ::ffff:a.b.c.d, and so conflicts with an IPv4 listener on P.
func SetV6Only(fd int, on bool) error {
	return setsockopt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, "IPV6_V6ONLY", on)
}

// --8<-- [end:options]

// setsockopt sets a boolean socket option, its error named after the option.
func setsockopt(fd, level, opt int, name string, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return os.NewSyscallError("setsockopt "+name, unix.SetsockoptInt(fd, level, opt, v))
}

// WaitFor is poll(2) on one descriptor, for events, at most within. It returns ETIMEDOUT
// when nothing came, and when only POLLERR came, what SO_ERROR says: a reset connection fails
// with ECONNRESET rather than a timeout. (A reset socket also reports POLLIN, so a wait for
// input returns nil and the read that follows meets the errno.)
func WaitFor(fd int, events int16, within time.Duration) error {
	deadline := time.Now().Add(within)
	for range 1000 {
		ms := int((time.Until(deadline) + time.Millisecond - 1) / time.Millisecond)
		if ms <= 0 {
			return os.NewSyscallError("poll", unix.ETIMEDOUT)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, ms)
		switch {
		case err == unix.EINTR, n == 0:
			// The Go runtime preempts threads with signals; poll is simply restarted.
			continue
		case err != nil:
			return os.NewSyscallError("poll", err)
		}
		if pfd[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 && pfd[0].Revents&events == 0 {
			soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && soerr != 0 {
				return os.NewSyscallError("poll", unix.Errno(soerr))
			}
			return fmt.Errorf("poll: revents %#x on descriptor %d", pfd[0].Revents, fd)
		}
		return nil
	}
	return errors.New("poll: interrupted 1000 times in a row")
}

// ErrnoName is the errno's symbolic name ("EADDRINUSE") for err, or "" when err carries no
// errno. Logs and evidence show the name: it is what man pages and kernel sources use.
func ErrnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return ""
}
