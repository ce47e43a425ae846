//go:build linux

package refserver

import "fmt"

// --8<-- [start:handler]

// Handler is what a forker of refserver replaces: the protocol. One Handler serves every
// loop at once: its methods run on the loops' goroutines, one at a time per loop but on
// several loops in parallel, so what it shares across connections needs a lock (or
// NewLoopState, one value per loop, which needs none). They must not block: a callback that
// waits stalls every connection of its loop. To answer later, hand the work to a goroutine
// and come back with Conn.Execute.
type Handler interface {
	// OnOpen runs once the connection is accepted and registered with a loop.
	OnOpen(c *Conn)
	// OnData gets the connection's input: what earlier calls left, then what the last
	// read(2) brought. It returns how many bytes it consumed. What it leaves (a message not
	// yet whole, or requests it puts off while Queued is high) stays in the connection's
	// buffer, at most Config.MaxInput, and comes again at the front of the next call: after
	// the next read, or at once when the call consumed something, or when output that backed
	// up has drained. in is valid only during the call: copy what you keep.
	OnData(c *Conn, in []byte) (consumed int)
	// OnClose runs once, after the descriptor is closed. err is nil for an orderly end (the
	// peer's FIN, Close, a drained shutdown) and says why otherwise (ECONNRESET, ErrIdle,
	// ErrInputLimit, ErrOutputLimit, ...).
	OnClose(c *Conn, err error)
}

// LoopStater is a Handler that keeps state per loop, such as a scratch buffer for replies:
// each loop calls NewLoopState once, before its first connection, and its connections'
// LoopState returns the value.
type LoopStater interface {
	NewLoopState(loop int) any
}

// --8<-- [end:handler]

// Echo writes back every byte it receives, nothing added: the protocol of the benchmarks and
// the tests, and the smallest useful Handler. It consumes everything at once, so its input
// never leaves the loop's read buffer.
type Echo struct{}

func (Echo) OnOpen(*Conn) {}

func (Echo) OnData(c *Conn, in []byte) int {
	c.Write(in)
	return len(in)
}

func (Echo) OnClose(*Conn, error) {}

// --8<-- [start:tuplehandler]

// TupleHandler greets each client with its connection's 5-tuple as the server sees it,
// then echoes. The first line `nc 127.0.0.1 7000` prints is the lesson of chapter 1: the
// client's port is the only part that changes from one nc to the next.
type TupleHandler struct{ Echo }

func (TupleHandler) OnOpen(c *Conn) {
	t, err := c.Tuple()
	if err != nil {
		// getpeername fails with ENOTCONN if the peer already reset.
		c.Close()
		return
	}
	// The server's tuple mirrored is the client's own: its address first.
	fmt.Fprintf(c, "%s  (protocol, you, me: your connection as the server sees it; "+
		"now echoing)\n", t.Mirror())
}

// --8<-- [end:tuplehandler]
