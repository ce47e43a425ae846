//go:build linux

package specs_test

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// Chapter 6's opening example: a passive socket, and the active socket accept spawns from
// it. go test runs it and compares what it prints with the Output comment. It prints
// facts, never a descriptor or a port number, which change from run to run. Errors are
// left out to keep it short: a call that failed would change the output, and the test
// with it.

// --8<-- [start:ch6-example]
func Example_passiveAndActive() {
	listener, _ := sock.Socket(unix.AF_INET)
	sock.Bind(listener, netip.MustParseAddrPort("127.0.0.1:0"))
	sock.Listen(listener, 8) // passive from here on
	addr, _ := sock.LocalAddr(listener)
	client, _ := sock.Socket(unix.AF_INET)
	sock.Connect(client, addr, time.Second)          // the kernel does the handshake
	sock.WaitFor(listener, unix.POLLIN, time.Second) // and queues the connection
	conn, _, _ := sock.Accept(listener)              // a new descriptor: an active socket
	fmt.Println("accept returned a new descriptor:", conn != listener && conn != client)
	roles := []string{"listener", "accepted", "client"}
	for i, fd := range []int{listener, conn, client} {
		defer unix.Close(fd)
		passive, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		_, err := unix.Getpeername(fd)
		fmt.Printf("%-8s SO_ACCEPTCONN %d, getpeername: %v\n", roles[i], passive, err)
	}
	// Output:
	// accept returned a new descriptor: true
	// listener SO_ACCEPTCONN 1, getpeername: transport endpoint is not connected
	// accepted SO_ACCEPTCONN 0, getpeername: <nil>
	// client   SO_ACCEPTCONN 0, getpeername: <nil>
}

// --8<-- [end:ch6-example]
