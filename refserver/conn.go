//go:build linux

package refserver

import (
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// Errors a Handler sees in OnClose, beside the kernel's own (ECONNRESET, ETIMEDOUT, ...).
var (
	ErrClosed      = errors.New("refserver: connection closed")
	ErrIdle        = errors.New("refserver: idle timeout")
	ErrOutputLimit = errors.New("refserver: output limit exceeded")
	ErrShutdown    = errors.New("refserver: shutdown deadline passed")
)

// connState is a set of flags; one byte keeps the Conn small, and an idle Conn is all an
// idle connection costs in user space.
type connState uint8

const (
	stPeerDone connState = 1 << iota // read returned 0: the peer sent FIN and will send no more
	stClosing                        // close once the output drains (Close, or the peer's FIN)
	stWrShut                         // our FIN went out (shutdown SHUT_WR); we wait for the peer's
	stWantOut                        // registered for EPOLLOUT instead of EPOLLIN: backpressure
	stClosed                         // the descriptor is closed; the Conn is only a memory
)

// Conn is one accepted, active socket. It belongs to the loop that accepted it and must be
// used only from that loop's Handler callbacks.
type Conn struct {
	fd   int
	loop *loop
	// peer comes free with accept4 and is kept because getpeername fails with ENOTCONN once
	// the peer has reset the connection, and the close log still wants to name it.
	peer netip.AddrPort
	// out holds what the socket's send buffer had no room for. It is nil whenever the kernel
	// took everything, so an idle connection holds no buffer at all.
	out []byte
	// err is the first failure, kept until the loop closes the descriptor after the callback
	// that met it, so a Handler is never re-entered from inside its own Write.
	err   error
	state connState
	// drainLeft is, in a shutdown, how many of the bytes the kernel had received when the
	// drain began the Handler has yet to get; the connection ends when it reaches 0.
	drainLeft int
	// lastActive is the loop's clock (unix nanoseconds) at the last read or write progress.
	lastActive int64
	// prev and next thread the loop's idle list, least recently active first, so the idle
	// timeout looks at one Conn per expiry instead of scanning all of them.
	prev, next *Conn

	// Context is the Handler's own per-connection state; refserver never touches it.
	Context any
}

// Fd is the connection's descriptor, for getsockopt and friends. Do not close it: Close does.
func (c *Conn) Fd() int { return c.fd }

// RemoteAddr is the peer's address and port as accept4 returned it.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.peer }

// Tuple asks the kernel for the connection's 5-tuple, this (the server's) end first.
func (c *Conn) Tuple() (sock.Tuple, error) { return sock.TupleOf(c.fd) }

// --8<-- [start:write]

// Write sends p or keeps it for later; it never blocks the loop. While anything is kept, the
// loop stops reading this connection (backpressure): a peer that sends but does not read
// fills its own socket buffers and is slowed by TCP's flow control, not by our memory. A
// Handler that writes more than Config.MaxOutput ahead of the peer has the connection closed
// with ErrOutputLimit.
func (c *Conn) Write(p []byte) (int, error) {
	if c.state&(stClosed|stWrShut) != 0 || c.err != nil {
		return 0, ErrClosed
	}
	n := 0
	if len(c.out) == 0 {
		var err error
		n, err = writeSome(c.fd, p)
		if err != nil {
			c.fail(err)
			return n, err
		}
		if n > 0 {
			c.lastActive = c.loop.now // progress; the loop moves c on its idle list
		}
		if n == len(p) {
			return n, nil
		}
	}
	if len(c.out)+len(p)-n > c.loop.srv.cfg.MaxOutput {
		c.fail(ErrOutputLimit)
		return n, ErrOutputLimit
	}
	// The send buffer is full: keep the rest. When the callback returns, the loop sees
	// c.out and waits for EPOLLOUT instead of EPOLLIN.
	c.out = append(c.out, p[n:]...)
	return len(p), nil
}

// --8<-- [end:write]

// Close ends the connection once its pending output is sent: the kernel sends FIN after it.
func (c *Conn) Close() error {
	if c.state&stClosed != 0 {
		return ErrClosed
	}
	c.state |= stClosing
	return nil
}

func (c *Conn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// writeSome writes until p is sent or the send buffer is full. EAGAIN is not an error here:
// it is the kernel saying "no room now", and the rest waits for EPOLLOUT.
func writeSome(fd int, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := sock.Write(fd, p[n:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return n, nil
		case err != nil:
			// EPIPE or ECONNRESET: the peer is gone. Go's runtime ignores the SIGPIPE that
			// came with EPIPE on a descriptor other than stdout and stderr.
			return n, err
		}
		n += m
	}
	return n, nil
}

// flush sends what Write kept. It reports whether everything went.
func (c *Conn) flush() bool {
	n, err := writeSome(c.fd, c.out)
	if err != nil {
		c.fail(err)
		return false
	}
	if n > 0 {
		// Progress is activity, and the loop moves c to its idle list's tail for it. Left at
		// the head, a connection that only takes bytes (it sends nothing, so read never
		// marks it) would stop expire there, and every silent connection behind it would
		// outlive IdleTimeout for as long as this one keeps taking.
		c.lastActive = c.loop.now
	}
	if n < len(c.out) {
		// Keep the unsent tail at the front; the buffer is reused, not regrown.
		c.out = c.out[:copy(c.out, c.out[n:])]
		return false
	}
	c.out = nil // drop the buffer: an idle connection should hold no memory
	return true
}
