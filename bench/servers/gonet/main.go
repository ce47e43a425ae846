// Command gonet is the benchmark's echo server on Go's net package, written the idiomatic
// way: a goroutine per connection and io.Copy. On Linux io.Copy between two TCP connections
// becomes splice(2) through a pipe (TCPConn.ReadFrom), so the bytes never enter user space.
package main

import (
	"io"
	"net"

	"portproof/bench/internal/serve"
)

func main() {
	// --8<-- [start:echo]
	serve.GoNet(serve.Parse(), func(c net.Conn) {
		defer c.Close()
		io.Copy(c, c) // splice(2) on Linux: socket -> pipe -> socket
	})
	// --8<-- [end:echo]
}
