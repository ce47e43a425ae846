// Package refserver is a minimal TCP server written directly on Linux system calls, so that
// every step the article "Understanding socket and port in TCP" talks about is a function you
// can read, call and watch the kernel answer.
//
// The life of a connection, in the order the files tell it:
//
//	steps.go    Socket, Bind, Listen: the passive socket, one syscall each.
//	loop.go     epoll_wait reports the listener readable: the kernel has finished a
//	            handshake and queued the connection (it did not wait for us).
//	accept.go   Accept takes it off the queue; the admission policy keeps or sheds it
//	            (connection limits, in all and per client address, and the spare
//	            descriptor for EMFILE).
//	conn.go     The accepted, active socket: loop.go reads it into the loop's shared buffer
//	            for the Handler; Write bounds what it queues for the peer (backpressure).
//	handler.go  What a forker replaces: the tuple and echo handlers.
//	server.go   Config, New, Serve, Shutdown: the wiring.
//
// Beside them, addr.go converts socket addresses, tuple.go reads a connection's 5-tuple back
// from the kernel, and inspect.go reads the accept queue and the descriptor table, which is
// how the specs in ../specs check the article's claims against this very code.
//
// refserver is Linux-only: it uses epoll, accept4 and TCP_INFO.
package refserver
