//go:build linux

package sock_test

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// The primer's examples (chapters/primer.md): each term of TCP shown on the reader's own
// kernel in a few calls, and checked by go test against its Output comment.

// Example_descriptorAndErrno: a socket is a descriptor, and a call the kernel refuses says
// why with an errno.
// --8<-- [start:primer-errno]
func Example_descriptorAndErrno() {
	fd, _ := sock.Socket(unix.AF_INET)
	defer unix.Close(fd)
	link, _ := os.Readlink(fmt.Sprint("/proc/self/fd/", fd))
	fmt.Println("above 2:", fd > 2, "| it names a", link[:len("socket")])
	sock.Bind(fd, netip.MustParseAddrPort("127.0.0.1:0")) // port 0: any free
	at, _ := sock.LocalAddr(fd)
	other, _ := sock.Socket(unix.AF_INET)
	defer unix.Close(other)
	err := sock.Bind(other, at)
	fmt.Println("bind the same port:", sock.ErrnoName(err))
	err = sock.Connect(other, at, time.Second)
	fmt.Println("connect, nobody listening:", sock.ErrnoName(err))
	// Output:
	// above 2: true | it names a socket
	// bind the same port: EADDRINUSE
	// connect, nobody listening: ECONNREFUSED
}

// --8<-- [end:primer-errno]

// Example_handshakeBeforeAccept: connect returns once the handshake is done, and the
// connection waits in the listener's accept queue until accept takes it.
// --8<-- [start:primer-queue]
func Example_handshakeBeforeAccept() {
	l, at := listener()
	defer unix.Close(l)
	c, _ := sock.Socket(unix.AF_INET)
	defer unix.Close(c)
	err := sock.Connect(c, at, time.Second) // SYN, SYN-ACK, ACK: done
	state, _ := sock.TCPState(c)
	sock.WaitFor(l, unix.POLLIN, time.Second) // readable: a connection waits
	q, _ := sock.AcceptQueueOf(l)
	fmt.Println("connect:", err, "| client:", state, "| accept queue:", q.Len)
	s, _, _ := sock.Accept(l)
	defer unix.Close(s)
	q, _ = sock.AcceptQueueOf(l)
	fmt.Println("after accept(): accept queue:", q.Len)
	// Output:
	// connect: <nil> | client: ESTABLISHED | accept queue: 1
	// after accept(): accept queue: 0
}

// --8<-- [end:primer-queue]

// Example_fin: close(2) with nothing left unread ends a connection with FIN, which the peer
// reads as end-of-stream.
// --8<-- [start:primer-fin]
func Example_fin() {
	l, at := listener()
	defer unix.Close(l)
	client, server := connected(l, at)
	defer unix.Close(client)
	unix.Close(server) // nothing unread: FIN
	n, err := readOne(client)
	state, _ := sock.TCPState(client)
	fmt.Println("read:", n, "bytes, error", err, "| client:", state)
	// Output:
	// read: 0 bytes, error <nil> | client: CLOSE_WAIT
}

// --8<-- [end:primer-fin]

// Example_rst: close(2) with input left unread aborts the connection with RST, which the
// peer reads as ECONNRESET.
// --8<-- [start:primer-rst]
func Example_rst() {
	l, at := listener()
	defer unix.Close(l)
	client, server := connected(l, at)
	defer unix.Close(client)
	sock.Write(client, []byte("x"))
	sock.WaitFor(server, unix.POLLIN, time.Second) // the byte has arrived...
	unix.Close(server)                             // ...and was never read: RST
	_, err := readOne(client)
	state, _ := sock.TCPState(client)
	fmt.Println("read:", sock.ErrnoName(err), "| client:", state)
	// Output:
	// read: ECONNRESET | client: CLOSE
}

// --8<-- [end:primer-rst]

// --8<-- [start:primer-helpers]

// listener is socket, bind to 127.0.0.1 port 0 and listen: the server page's steps 1 to 3.
func listener() (int, netip.AddrPort) {
	l, _ := sock.Socket(unix.AF_INET)
	sock.Bind(l, netip.MustParseAddrPort("127.0.0.1:0"))
	sock.Listen(l, 8)
	at, _ := sock.LocalAddr(l)
	return l, at
}

// connected is a client connected to the listener l at at, and the server's socket for it.
func connected(l int, at netip.AddrPort) (client, server int) {
	client, _ = sock.Socket(unix.AF_INET)
	sock.Connect(client, at, time.Second)
	sock.WaitFor(l, unix.POLLIN, time.Second)
	server, _, _ = sock.Accept(l)
	return client, server
}

// readOne waits for the client's socket to be readable and reads a byte: 0 bytes is
// end-of-stream, the peer's FIN.
func readOne(fd int) (int, error) {
	sock.WaitFor(fd, unix.POLLIN, time.Second)
	return sock.Read(fd, make([]byte, 1))
}

// --8<-- [end:primer-helpers]
