//go:build linux

package lab

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/onsi/ginkgo/v2"
	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// Family is an address family a claim is proven over, always on loopback: the specs send
// traffic nowhere else.
type Family struct {
	Name     string     // "ipv4" or "ipv6": the spec's label, as in Label("claim:port.same", "ipv4")
	Domain   int        // socket(2)'s first argument: AF_INET or AF_INET6
	Loopback netip.Addr // 127.0.0.1 or ::1
}

var (
	IPv4 = Family{Name: "ipv4", Domain: unix.AF_INET, Loopback: netip.MustParseAddr("127.0.0.1")}
	IPv6 = Family{Name: "ipv6", Domain: unix.AF_INET6, Loopback: netip.IPv6Loopback()}
)

// Families lists the families every chapter proves its claims over, IPv4 first.
func Families() []Family { return []Family{IPv4, IPv6} }

// At is the family's loopback address with port; port 0 lets bind(2) choose.
func (f Family) At(port uint16) netip.AddrPort { return netip.AddrPortFrom(f.Loopback, port) }

func (f Family) String() string { return fmt.Sprintf("%s loopback %s", f.Name, f.Loopback) }

// loopbackUsable probes each family once per process: the answer does not change during
// a run.
var loopbackUsable = map[string]func() error{
	IPv4.Name: sync.OnceValue(func() error { return probeLoopback(IPv4) }),
	IPv6.Name: sync.OnceValue(func() error { return probeLoopback(IPv6) }),
}

// probeLoopback binds a TCP socket to the loopback address, port 0. A kernel built without
// IPv6, or booted with ipv6.disable=1, fails socket(AF_INET6) with EAFNOSUPPORT; a loopback
// with net.ipv6.conf.lo.disable_ipv6=1 (some containers) has no ::1, and bind fails with
// EADDRNOTAVAIL.
func probeLoopback(f Family) error {
	fd, err := sock.Socket(f.Domain)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return sock.Bind(fd, f.At(0))
}

// RequireFamily stops the spec, through Require, when the family's loopback cannot be bound
// on this machine.
func RequireFamily(f Family) {
	ginkgo.GinkgoHelper()
	err := loopbackUsable[f.Name]()
	why := ""
	if err != nil {
		why = fmt.Sprintf("%s is not usable here: %v (%s)", f, err, sock.ErrnoName(err))
	}
	Require(err == nil, why)
}
