//go:build linux

package testkit

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// Family is an address family the tests run over, on its loopback address: the tests send
// traffic nowhere else.
type Family struct {
	Name     string     // "ipv4", "ipv6": the subtest's name
	Domain   int        // socket(2)'s first argument: AF_INET or AF_INET6
	Loopback netip.Addr // 127.0.0.1 or ::1
}

var Families = []Family{
	{"ipv4", unix.AF_INET, netip.MustParseAddr("127.0.0.1")},
	{"ipv6", unix.AF_INET6, netip.IPv6Loopback()},
}

// Any is the family's loopback address with port 0: bind(2) lets the kernel choose.
func (f Family) Any() netip.AddrPort { return netip.AddrPortFrom(f.Loopback, 0) }

// DomainName is the domain as strace and the server's narration spell it.
func (f Family) DomainName() string {
	if f.Domain == unix.AF_INET6 {
		return "AF_INET6"
	}
	return "AF_INET"
}

// Require stops the test when the family's loopback cannot be bound here: a kernel without
// IPv6 fails socket(AF_INET6) with EAFNOSUPPORT, a container with
// net.ipv6.conf.lo.disable_ipv6=1 fails bind(::1) with EADDRNOTAVAIL. Under CI (InCI) a
// missing family is a failure, not a skip, as in the specs.
func (f Family) Require(t testing.TB) {
	t.Helper()
	err := f.probe()
	if err == nil {
		return
	}
	Require(t, false, fmt.Sprintf("%s loopback %s is not usable here: %v", f.Name, f.Loopback, err))
}

// probe binds a TCP socket to the loopback address, port 0, with refserver's own steps.
// (refserver's tests import this package, so it uses the syscall layer, sock, which does not
// import them back.)
func (f Family) probe() error {
	fd, err := sock.Socket(f.Domain)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, sock.ErrnoName(err))
	}
	defer unix.Close(fd)
	if err := sock.Bind(fd, f.Any()); err != nil {
		return fmt.Errorf("%w (%s)", err, sock.ErrnoName(err))
	}
	return nil
}
