//go:build linux

package refserver

import "fmt"

// Handler is what a forker of refserver replaces: the protocol. Its methods run on the
// connection's loop goroutine, one at a time per loop, so they must not block: a handler
// that waits stalls every connection of its loop. To answer later, keep the *Conn and call
// Write from the same callback chain, or hand work to a goroutine and back through your own
// queue.
type Handler interface {
	// OnOpen runs once the connection is accepted and registered with a loop.
	OnOpen(c *Conn)
	// OnData receives what one read(2) returned. The slice is the loop's shared buffer: it
	// is valid only during the call, so copy what you keep.
	OnData(c *Conn, data []byte)
	// OnClose runs once, after the descriptor is closed. err is nil for an orderly end (the
	// peer's FIN, Close, a drained shutdown) and says why otherwise (ECONNRESET, ErrIdle, ...).
	OnClose(c *Conn, err error)
}

// Echo writes back every byte it receives, nothing added: the protocol of the benchmarks and
// the tests, and the smallest useful Handler.
type Echo struct{}

func (Echo) OnOpen(*Conn)                {}
func (Echo) OnData(c *Conn, data []byte) { c.Write(data) }
func (Echo) OnClose(*Conn, error)        {}

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
