//go:build linux

package specs

import (
	"fmt"
	"net"
)

// Chapter 5's answer in plain Go, for the chapter's opening: the kernel finishes the
// handshake, and takes the client's bytes, before the server calls Accept; a server that
// wants to say no can only do it afterwards, and does it with a FIN.

// --8<-- [start:ch5-example]
func Example_handshakeBeforeAccept() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // the kernel answers SYNs now
	defer ln.Close()
	c, _ := net.Dial("tcp", ln.Addr().String()) // returns: the handshake is done
	defer c.Close()
	n, _ := c.Write([]byte("hello")) // and no one has accepted yet
	s, _ := ln.Accept()              // a finished connection, bytes and all
	buf := make([]byte, 8)
	m, _ := s.Read(buf)
	fmt.Printf("wrote %d bytes before Accept; the server reads %q\n", n, buf[:m])
	s.Close() // the program's "no": a FIN
	_, err := c.Read(buf)
	fmt.Println("the client reads", err)
	// Output:
	// wrote 5 bytes before Accept; the server reads "hello"
	// the client reads EOF
}

// --8<-- [end:ch5-example]
