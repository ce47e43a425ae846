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
	ErrInputLimit  = errors.New("refserver: a message longer than Config.MaxInput")
	ErrOutputLimit = errors.New("refserver: more output queued than Config.MaxOutput")
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
	stParked                         // registered for nothing: reading paused by the budget
	stAgain                          // on the loop's list of input to hand over again
	stClosed                         // the descriptor is closed; the Conn is only a memory
)

// Conn is one accepted, active socket. It belongs to the loop that accepted it: use it from
// that loop's Handler callbacks, or from any goroutine through Execute.
type Conn struct {
	fd   int
	loop *loop
	// peer comes free with accept4 and is kept because getpeername fails with ENOTCONN once
	// the peer has reset the connection, and the close log still wants to name it.
	peer netip.AddrPort
	// buf holds the input the Handler left and the output the socket had no room for, and
	// is nil while there is neither: an idle connection costs its Conn alone (128 bytes).
	buf *buffers
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

// buffers are what a connection holds only while it must.
type buffers struct {
	// in is the input the Handler left (a message not yet whole, or requests it put off
	// while its output backs up), at most Config.MaxInput. A Handler that takes everything,
	// like Echo, reads from the loop's buffer and never has one: no copy.
	in []byte
	// out is what the socket's send buffer had no room for, at most Config.MaxOutput.
	out []byte
}

// inBuf and outBuf are the connection's kept input and queued output, nil when it has none.
func (c *Conn) inBuf() []byte {
	if c.buf == nil {
		return nil
	}
	return c.buf.in
}

func (c *Conn) outBuf() []byte {
	if c.buf == nil {
		return nil
	}
	return c.buf.out
}

// setIn and setOut replace them, and let go of the buffers once both are empty.
func (c *Conn) setIn(b []byte)  { c.setBufs(b, c.outBuf()) }
func (c *Conn) setOut(b []byte) { c.setBufs(c.inBuf(), b) }

func (c *Conn) setBufs(in, out []byte) {
	switch {
	case len(in) == 0 && len(out) == 0:
		c.buf = nil
	case c.buf == nil:
		c.buf = &buffers{in: in, out: out}
	default:
		c.buf.in, c.buf.out = in, out
	}
}

// Fd is the connection's descriptor, for getsockopt and friends. Do not close it: Close does.
func (c *Conn) Fd() int { return c.fd }

// RemoteAddr is the peer's address and port as accept4 returned it.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.peer }

// Tuple asks the kernel for the connection's 5-tuple, this (the server's) end first.
func (c *Conn) Tuple() (sock.Tuple, error) { return sock.TupleOf(c.fd) }

// LoopState is the value the Handler's NewLoopState made for this connection's loop (nil if
// the Handler has none). Only that loop's callbacks touch it, and they never run at once, so
// it needs no lock.
func (c *Conn) LoopState() any { return c.loop.state }

// --8<-- [start:write]

// Write queues p for the peer; it never blocks the loop. What one callback writes is
// gathered and goes out in one write(2) when the callback returns (a Write of 16 KiB or
// more goes out at once, from p itself). What the socket's send buffer has no room for waits
// in the connection's own buffer, and while anything waits there the loop stops reading this
// connection (backpressure): a peer that sends but does not read fills its own socket
// buffers and is slowed by TCP's flow control, not by our memory. Past Config.MaxOutput the
// connection is closed with ErrOutputLimit: watch Queued to stay below it.
func (c *Conn) Write(p []byte) (int, error) {
	if c.state&(stClosed|stWrShut) != 0 || c.err != nil {
		return 0, ErrClosed
	}
	if len(c.outBuf()) > 0 {
		return c.queue(p) // the socket is full: behind what waits
	}
	l := c.loop
	if l.pendConn != c {
		l.flushPending() // another connection's, from an Execute just before
	}
	// --8<-- [start:write-gather]
	if len(p) < directWrite && len(l.pend)+len(p) <= cap(l.pend) {
		l.pend, l.pendConn = append(l.pend, p...), c
		return len(p), nil
	}
	// --8<-- [end:write-gather]
	if l.pendConn == c {
		l.flushPending() // what was gathered goes first
		if c.err != nil {
			return 0, c.err
		}
		if len(c.outBuf()) > 0 {
			return c.queue(p)
		}
	}
	return c.send(p)
}

// --8<-- [end:write]

// Queued is how much output waits for the peer: what the socket had no room for, and what
// this callback wrote that has not gone out yet. A Handler that answers many requests from
// one read stops at a mark of its own (say 256 KiB) and returns what it consumed: the loop
// hands it the rest again once the queue has drained.
func (c *Conn) Queued() int {
	n := len(c.outBuf())
	if c.loop.pendConn == c {
		n += len(c.loop.pend)
	}
	return n
}

// Close ends the connection once its pending output is sent: the kernel sends FIN after it.
func (c *Conn) Close() error {
	if c.state&stClosed != 0 {
		return ErrClosed
	}
	c.state |= stClosing
	return nil
}

// Execute runs fn on the connection's loop, from any goroutine: the way back from work done
// elsewhere (a goroutine that waited on a disk or another server) to a Conn, which only its
// loop may touch. The loop is woken through its eventfd if it sleeps in epoll_wait, and runs
// fn as it would a callback; what fn writes goes out when it returns. fn does not run if the
// connection has closed by then. Execute returns ErrClosed once the server has stopped.
func (c *Conn) Execute(fn func(*Conn)) error { return c.loop.post(c, fn) }

// send writes p, and queues what the socket had no room for.
func (c *Conn) send(p []byte) (int, error) {
	n, err := writeSome(c.fd, p)
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
	if _, err := c.queue(p[n:]); err != nil {
		return n, err
	}
	return len(p), nil
}

// --8<-- [start:queue]

// queue keeps p in the connection's own buffer until EPOLLOUT, within Config.MaxOutput.
func (c *Conn) queue(p []byte) (int, error) {
	out := c.outBuf()
	if len(out)+len(p) > c.loop.srv.cfg.MaxOutput {
		c.fail(ErrOutputLimit)
		return 0, ErrOutputLimit
	}
	c.setOut(append(out, p...))
	c.loop.srv.budget.add(len(p))
	return len(p), nil
}

// --8<-- [end:queue]

func (c *Conn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// --8<-- [start:writesome]

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

// --8<-- [end:writesome]

// flush sends what waits in the connection's buffer. It reports whether everything went.
func (c *Conn) flush() bool {
	out := c.outBuf()
	n, err := writeSome(c.fd, out)
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
		c.loop.srv.budget.sub(n)
	}
	if n < len(out) {
		// Keep the unsent tail at the front; the buffer is reused, not regrown.
		c.setOut(out[:copy(out, out[n:])])
		return false
	}
	c.setOut(nil) // drop the buffer: an idle connection should hold no memory
	return true
}

// dropBuffers lets go of what a closed connection held.
func (c *Conn) dropBuffers() {
	c.loop.srv.budget.sub(len(c.outBuf()))
	c.buf = nil
}
