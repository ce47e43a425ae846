//go:build linux

package specs

import (
	"fmt"
	"net"
)

// Chapter 3's opening example, in plain Go: one listening port holds many connections, all
// on the listener's own address and port, told apart by the clients' ports. go test runs it
// and compares what it prints with the Output comment. Errors are left out to keep it short:
// a failed call leaves a nil value behind, and the next use of it panics the test.

// --8<-- [start:ch3-example]
func Example_onePortManyConnections() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // port 0: the kernel picks one
	defer ln.Close()
	serverEnds, clientPorts := map[string]bool{}, map[int]bool{}
	for range 100 {
		c, _ := net.Dial("tcp", ln.Addr().String()) // its kernel picks its port
		defer c.Close()
		s, _ := ln.Accept() // a new socket, and descriptor, per connection
		defer s.Close()
		serverEnds[s.LocalAddr().String()] = true
		clientPorts[c.LocalAddr().(*net.TCPAddr).Port] = true
	}
	fmt.Println(len(serverEnds), "server end,", len(clientPorts), "client ports")
	// Output: 1 server end, 100 client ports
}

// --8<-- [end:ch3-example]
