// Command gonet is the benchmark's echo server on Go's net package, written the idiomatic
// way: a goroutine per connection and io.Copy. On Linux io.Copy between two TCP connections
// becomes splice(2) through a pipe (TCPConn.ReadFrom), so the bytes never enter user space.
package main

import (
	"errors"
	"io"
	"net"
	"time"

	"portproof/bench/internal/serve"
)

func main() {
	f := serve.Parse()
	ln, err := net.Listen("tcp", f.Addr)
	if err != nil {
		serve.Fatal(err)
	}
	serve.Announce(ln.Addr().String())
	go acceptLoop(ln)
	serve.Run(f)
}

// --8<-- [start:echo]
func acceptLoop(ln net.Listener) {
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
		go func() {
			defer c.Close()
			io.Copy(c, c) // splice(2) on Linux: socket -> pipe -> socket
		}()
	}
}

// --8<-- [end:echo]
