package serve

import (
	"errors"
	"net"
	"time"
)

// GoNet listens on f.Addr and serves what AcceptLoop accepts, as a Go program on the net
// package does, until the driver signals (Run).
func GoNet(f Flags, serveConn func(net.Conn)) {
	ln, err := net.Listen("tcp", f.Addr)
	if err != nil {
		Fatal(err)
	}
	Announce(ln.Addr().String())
	go AcceptLoop(ln, serveConn)
	Run(f)
}

// --8<-- [start:accept]

// AcceptLoop hands each connection ln accepts to serveConn in a goroutine of its own, until
// ln is closed.
func AcceptLoop(ln net.Listener, serveConn func(net.Conn)) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			// EMFILE and friends: wait and try again, as net/http does.
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go serveConn(c)
	}
}

// --8<-- [end:accept]
