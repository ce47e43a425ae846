//go:build linux

package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// The error-returning twins of Listen, Dial and Accept in dial.go, for code that runs
// outside a spec: a sandbox child has no Ginkgo to fail into, so it returns what the kernel
// said and the parent asserts. Each is built on refserver's own steps, and the caller closes
// what it gets.

// ListenOn is socket, bind and listen; it returns the listener and its address as
// getsockname reports it (the port the kernel chose for port 0).
func ListenOn(at netip.AddrPort, backlog int) (int, netip.AddrPort, error) {
	fd, err := sock.Socket(sock.Family(at))
	if err != nil {
		return -1, at, err
	}
	if err = sock.Bind(fd, at); err == nil {
		err = sock.Listen(fd, backlog)
	}
	if err == nil {
		at, err = sock.LocalAddr(fd)
	}
	if err != nil {
		unix.Close(fd)
		return -1, at, err
	}
	return fd, at, nil
}

// DialTo is socket and connect, waiting at most ConnectWithin for the handshake.
func DialTo(to netip.AddrPort) (int, error) {
	fd, err := sock.Socket(sock.Family(to))
	if err != nil {
		return -1, err
	}
	if err := sock.Connect(fd, to, ConnectWithin); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// AcceptOn takes a connection off the listener l with sock.Accept, waiting at most
// within for one. The listener is non-blocking (SOCK_NONBLOCK), so accept4 on an empty queue
// is EAGAIN at once, and the final ACK of a handshake may still be on its way when connect
// returns: poll(POLLIN) is how it waits for a finished handshake.
func AcceptOn(l int, within time.Duration) (int, netip.AddrPort, error) {
	deadline := time.Now().Add(within)
	for range 1000 {
		fd, peer, err := sock.Accept(l)
		if !errors.Is(err, unix.EAGAIN) {
			return fd, peer, err
		}
		// Empty: nothing yet, or readable yet empty by the time accept4 ran (another accept
		// took it, or the client reset it meanwhile). Wait again, within the same deadline.
		if err := WaitFor(l, unix.POLLIN, time.Until(deadline)); err != nil {
			return -1, netip.AddrPort{}, fmt.Errorf("accept4: nothing queued within %v: %w", within, err)
		}
	}
	return -1, netip.AddrPort{}, errors.New("accept4: EAGAIN 1000 times in a row")
}
