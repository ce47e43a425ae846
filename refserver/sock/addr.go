//go:build linux

package sock

import (
	"fmt"
	"net"
	"net/netip"

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
