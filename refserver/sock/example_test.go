//go:build linux

package sock_test

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// The examples the chapters open with: plain Go on package sock, each a few lines, run by go
// test, which compares what they print with their Output comment. They print facts, never a
// port number, so that the output is the same on every machine. To keep them short they
// neither check errors, since a failed call would change what they print and the test would
// fail, nor close their descriptors, which the test process gives back when it ends.

// --8<-- [start:ch1-example]
func ExampleTupleOf_twoConnections() {
	ln, _ := sock.Socket(unix.AF_INET)
	sock.Bind(ln, netip.MustParseAddrPort("127.0.0.1:0")) // port 0: any free one
	sock.Listen(ln, 8)
	server, _ := sock.LocalAddr(ln)
	dial := func() sock.Tuple { // a new socket, connected to the listener
		c, _ := sock.Socket(unix.AF_INET)
		sock.Connect(c, server, time.Second) // the kernel picks c's port here
		t, _ := sock.TupleOf(c)
		return t
	}
	a, b := dial(), dial()
	fmt.Println("same protocol:", a.Proto == b.Proto)
	fmt.Println("same source address:", a.Local.Addr() == b.Local.Addr())
	fmt.Println("same source port:", a.Local.Port() == b.Local.Port())
	fmt.Println("same destination address:", a.Remote.Addr() == b.Remote.Addr())
	fmt.Println("same destination port:", a.Remote.Port() == b.Remote.Port())
	// Output:
	// same protocol: true
	// same source address: true
	// same source port: false
	// same destination address: true
	// same destination port: true
}

// --8<-- [end:ch1-example]

// --8<-- [start:ch2-example]
func ExampleAccept_onePort() {
	ln, _ := sock.Socket(unix.AF_INET)
	sock.Bind(ln, netip.MustParseAddrPort("127.0.0.1:0"))
	sock.Listen(ln, 8)
	server, _ := sock.LocalAddr(ln)
	clientPorts := map[uint16]bool{}
	for range 3 {
		c, _ := sock.Socket(unix.AF_INET)
		sock.Connect(c, server, time.Second)
		sock.WaitFor(ln, unix.POLLIN, time.Second) // until it is in the queue
		fd, client, _ := sock.Accept(ln)
		at, _ := sock.LocalAddr(fd) // getsockname on the new socket
		clientPorts[client.Port()] = true
		fmt.Println("new fd:", fd != ln, "| listener's address and port:", at == server)
	}
	fmt.Println("different client ports:", len(clientPorts))
	// Output:
	// new fd: true | listener's address and port: true
	// new fd: true | listener's address and port: true
	// new fd: true | listener's address and port: true
	// different client ports: 3
}

// --8<-- [end:ch2-example]
