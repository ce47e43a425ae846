// Package refserver is a minimal TCP server written directly on Linux system calls, so that
// every step the article "Understanding socket and port in TCP" talks about is a function you
// can read, call and watch the kernel answer.
//
// It has two layers. Package sock (refserver/sock) is the system calls and the kernel
// readers: socket, bind, listen, accept4, connect, the socket options, a connection's 5-tuple,
// the accept queue from TCP_INFO, the descriptor table. This package is the server built on
// it; a fork changes the Handler and the Config, and keeps the rest.
//
// The life of a connection, in the order the files tell it and the calls go:
//
//	config.go   Config: what a Server is told, and what its zero values stand for.
//	server.go   New opens the listener(s) with sock's steps, narrated; Serve runs the loops;
//	            Shutdown drains them.
//	loop.go     epoll_wait reports the listener readable: the kernel has finished a
//	            handshake and queued the connection (it did not wait for us). The loop
//	            accepts, registers, reads into its shared buffer for the Handler, waits for
//	            room when output backs up, times out the idle, and closes: it owns the
//	            connection's whole life, and hands its events one way, to the next files.
//	accept.go   The admission policy: the loop asks it about the head of the accept queue,
//	            and it admits, refuses (connection caps, in all and per client address) or
//	            sheds on EMFILE with the spare descriptor.
//	handler.go  What a forker replaces: the tuple and echo handlers.
//	conn.go     The accepted, active socket as the Handler sees it: Write bounds what it
//	            queues for the peer (backpressure), Close ends it once that is sent.
//	stats.go    The counters and the Stats snapshot of the SIGUSR1 line.
//	log.go      The narration, a line per connection when asked, and every kind of flood at
//	            most once a second.
//
// refserver is Linux-only: it uses epoll, accept4 and TCP_INFO.
package refserver
