//go:build linux

package sock

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of the hot path, made directly: once per connection (accept4) and once per
// read or write. Everything else in this package goes through x/sys/unix as usual.

// accept4 is accept4(2) made directly, with the peer's address on the stack: unix.Accept4
// moves its sockaddr buffer to the heap, allocates a Sockaddr, and asks getsockopt(SO_PROTOCOL)
// of every IPv4 and IPv6 connection, one system call more per accept. At a thousand
// connections a second that garbage is most of what the server allocates.
func accept4(listener, flags int) (int, netip.AddrPort, unix.Errno) {
	var rsa unix.RawSockaddrInet6 // room for either family
	size := uint32(unix.SizeofSockaddrInet6)
	r, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(listener),
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)), uintptr(flags), 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&rsa.Port))[:]) // network order
	if rsa.Family == unix.AF_INET {
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		return int(r), netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), port), 0
	}
	if rsa.Scope_id != 0 { // a link-local peer: name its interface, as AddrPort does
		sa := &unix.SockaddrInet6{Port: int(port), ZoneId: rsa.Scope_id, Addr: rsa.Addr}
		return int(r), AddrPort(sa), 0
	}
	return int(r), netip.AddrPortFrom(netip.AddrFrom16(rsa.Addr), port), 0
}

// Read and Write are read(2) and write(2) for a non-blocking socket, made without the Go
// scheduler's entersyscall and exitsyscall: they never block, so there is no P to hand off and
// no thread to wake to take it back. The error is the bare errno, unwrapped, because the hot
// path's commonest answer is EAGAIN ("nothing now, wait for epoll"), and wrapping it would
// allocate on every one; callers compare with ==.
func Read(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

func Write(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO is read(2) or write(2), by trap. p's address becomes a uintptr inside the call's own
// argument list: only there does the compiler keep p alive and in place for the length of a
// call to an assembly function (unsafe.Pointer's rule 4); a uintptr held in a variable
// before the call is a number the garbage collector does not see.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))),
		uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
