//go:build linux

package specs

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// Chapter 4's opening example: a listener with backlog 0 that never calls accept(). The
// kernel finishes the first client's handshake on its own and queues it (0+1); the second
// client's SYN finds the queue full and is dropped, so its connect() waits, and gives up
// after 300 ms, long before its kernel would send the SYN again (1 s). go test compares the
// output with the Output comment. Errors are left out to keep it short: a failed call
// changes the output, and the test fails.

// --8<-- [start:ch4-example]
func Example_backlogPlusOne() {
	l, _ := sock.Socket(unix.AF_INET)
	defer unix.Close(l)
	_ = sock.Bind(l, netip.MustParseAddrPort("127.0.0.1:0"))
	_ = sock.Listen(l, 0) // backlog 0: room for 0+1 finished handshakes
	addr, _ := sock.LocalAddr(l)
	for i := 1; i <= 2; i++ { // two clients, and no accept() at all
		c, _ := sock.Socket(unix.AF_INET)
		defer unix.Close(c)
		err := sock.Connect(c, addr, 300*time.Millisecond) // the example's own deadline
		_ = sock.WaitFor(l, unix.POLLIN, time.Second)      // readable: one is queued
		q, _ := sock.AcceptQueueOf(l)                      // TCP_INFO on the listener
		fmt.Printf("client %d: %v; queued %d\n", i, err, q.Len)
	}
	// Output:
	// client 1: <nil>; queued 1
	// client 2: connect: connection timed out; queued 1
}

// --8<-- [end:ch4-example]
