// Package sock is refserver's lower layer: the system calls a TCP server makes and the kernel
// readers that show what they did, each one function with the syscall in view, as Go's net
// sits on internal/poll. The server (package refserver) is built on it, and so are the specs
// that prove the article's claims against this very code.
//
//	steps.go    Socket, Bind, Listen, Accept, Connect and the socket options: one syscall each,
//	            in the order a server calls them, errors wrapped once (os.SyscallError).
//	raw.go      the hot path made directly: accept4 with the peer on the stack, and read(2)
//	            and write(2) on non-blocking sockets without the scheduler's hand-off.
//	addr.go     sockaddr to and from netip.AddrPort.
//	tuple.go    a connection's 5-tuple, read back with getsockname, getpeername, SO_PROTOCOL.
//	inspect.go  the accept queue and the TCP state from TCP_INFO, the descriptor table and
//	            RLIMIT_NOFILE, and sysctls from /proc/sys.
//
// sock is Linux-only.
package sock
