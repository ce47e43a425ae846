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
	sock.Connect(client, addr, time.Second)          // the kernel's handshake
	sock.WaitFor(listener, unix.POLLIN, time.Second) // its connection, queued
	conn, _, _ := sock.Accept(listener)              // a new, active socket
	fmt.Println("a new descriptor:", conn != listener && conn != client)
	roles := []string{"listener:", "accepted:", "client:"}
	for i, fd := range []int{listener, conn, client} {
		defer unix.Close(fd)
		on, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		_, err := unix.Getpeername(fd) // ENOTCONN: no peer
		fmt.Printf("%-9s SO_ACCEPTCONN %d, peer %t\n", roles[i], on, err == nil)
	}
	// Output:
	// a new descriptor: true
	// listener: SO_ACCEPTCONN 1, peer false
	// accepted: SO_ACCEPTCONN 0, peer true
	// client:   SO_ACCEPTCONN 0, peer true
}

// --8<-- [end:ch6-example]
