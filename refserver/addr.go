//go:build linux

package refserver

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Family is the address family a socket for ap must be created with: AF_INET for an IPv4
// address, AF_INET6 for everything else (an IPv4-mapped ::ffff:a.b.c.d included, which an
// AF_INET6 socket reaches through the dual stack).
func Family(ap netip.AddrPort) int {
	if ap.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// Sockaddr converts ap into the sockaddr_in or sockaddr_in6 that bind(2) and connect(2) take.
func Sockaddr(ap netip.AddrPort) (unix.Sockaddr, error) {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return nil, fmt.Errorf("no IP address in %q", ap)
	case a.Is4():
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		// A link-local fe80:: address is ambiguous without an interface; the kernel wants
		// its index in sin6_scope_id.
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return nil, fmt.Errorf("zone of %s: %w", ap, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, nil
}

// AddrPort converts what accept4, getsockname or getpeername returned. It returns the zero
// AddrPort for a family other than AF_INET and AF_INET6.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a = a.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(a, uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// accept4 is accept4(2) made directly, with the peer's address on the stack: unix.Accept4
// moves its sockaddr buffer to the heap, allocates a Sockaddr, and asks
// getsockopt(SO_PROTOCOL) of every IPv4 and IPv6 connection, one system call more per accept. At a
// thousand connections a second that garbage is most of what the server allocates.
func accept4(listener, flags int) (int, netip.AddrPort, unix.Errno) {
	var rsa unix.RawSockaddrInet6 // room for either family
	size := uint32(unix.SizeofSockaddrInet6)
	r, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(listener), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&size)), uintptr(flags), 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&rsa.Port))[:]) // network order
	if rsa.Family == unix.AF_INET {
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		return int(r), netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), port), 0
	}
	if rsa.Scope_id != 0 { // a link-local peer: name its interface, as AddrPort does
		return int(r), AddrPort(&unix.SockaddrInet6{Port: int(port), ZoneId: rsa.Scope_id, Addr: rsa.Addr}), 0
	}
	return int(r), netip.AddrPortFrom(netip.AddrFrom16(rsa.Addr), port), 0
}
