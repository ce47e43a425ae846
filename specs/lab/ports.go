//go:build linux

package lab

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
)

// PortRangeSysctl is where the kernel keeps the ephemeral port range. Despite "ipv4" in
// its name it is the range for IPv6 sockets too, and like every net.* setting it belongs to
// the network namespace: the specs read it, never write it.
const PortRangeSysctl = "net.ipv4.ip_local_port_range"

// LocalPortRange is ReadPortRange for a spec, which fails if the range cannot be read.
func LocalPortRange() evidence.PortRange {
	ginkgo.GinkgoHelper()
	r, err := ReadPortRange()
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "read %s", PortRangeSysctl)
	return r
}

// ReadPortRange reads net.ipv4.ip_local_port_range with sock.Sysctl, in the namespace of the
// calling thread (a sandbox child's own): two numbers, the lowest and the highest port, as
// the kernel writes them back ("40000\t40009").
func ReadPortRange() (evidence.PortRange, error) {
	v, err := sock.Sysctl(PortRangeSysctl)
	if err != nil {
		return evidence.PortRange{}, err
	}
	return parsePortRange(v)
}

func parsePortRange(v string) (evidence.PortRange, error) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return evidence.PortRange{}, fmt.Errorf("%s = %q: want two numbers", PortRangeSysctl, v)
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 16)
	hi, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || lo > hi {
		return evidence.PortRange{}, fmt.Errorf("%s = %q: not a range", PortRangeSysctl, v)
	}
	return evidence.PortRange{Low: uint16(lo), High: uint16(hi), Size: int(hi-lo) + 1, Sysctl: PortRangeSysctl}, nil
}
