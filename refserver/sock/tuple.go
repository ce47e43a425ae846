//go:build linux

package sock

import (
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Tuple is the 5-tuple that names a connection, read back from the kernel for one of its
// two ends: the protocol, this end's address and port, and the other end's. The kernel
// keeps one such entry per socket, and no two TCP connections may share one.
type Tuple struct {
	Proto  string         // "tcp" or "udp": from SO_PROTOCOL, the kernel's word, not assumed
	Local  netip.AddrPort // getsockname(2): this end
	Remote netip.AddrPort // getpeername(2): the other end
}

// String writes the tuple from this end's side: "tcp 127.0.0.1:54321 -> 127.0.0.1:7000",
// local first. The server's end of the same connection prints as its Mirror.
func (t Tuple) String() string {
	return fmt.Sprintf("%s %s -> %s", t.Proto, t.Local, t.Remote)
}

// Mirror is the same connection seen from the other end: local and remote swapped.
func (t Tuple) Mirror() Tuple {
	return Tuple{Proto: t.Proto, Local: t.Remote, Remote: t.Local}
}

// TupleOf asks the kernel for the 5-tuple of a connected socket. For a listener, or a UDP
// socket that never called connect, getpeername fails with ENOTCONN: it has no other end.
func TupleOf(fd int) (Tuple, error) {
	proto, err := ProtocolOf(fd)
	if err != nil {
		return Tuple{}, err
	}
	local, err := LocalAddr(fd)
	if err != nil {
		return Tuple{}, err
	}
	remote, err := PeerAddr(fd)
	if err != nil {
		return Tuple{}, err
	}
	return Tuple{Proto: proto, Local: local, Remote: remote}, nil
}

// ProtocolOf names the socket's protocol from SO_PROTOCOL.
func ProtocolOf(fd int) (string, error) {
	p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return "", os.NewSyscallError("getsockopt SO_PROTOCOL", err)
	}
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp", nil
	case unix.IPPROTO_UDP:
		return "udp", nil
	}
	return fmt.Sprintf("proto%d", p), nil
}

// LocalAddr is getsockname(2): the address and port the socket is bound to, the one the
// kernel chose when it was given port 0 or bound implicitly by connect.
func LocalAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getsockname", err)
	}
	return AddrPort(sa), nil
}

// PeerAddr is getpeername(2): the other end of a connected socket.
func PeerAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getpeername", err)
	}
	return AddrPort(sa), nil
}
