//go:build linux

package lab

import (
	"strconv"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"portproof/refserver/sock"
)

// What the kernel says of a socket or a setting, for a spec: the kernel must answer, and an
// error fails the spec.

// TCPState is sock.TCPState: the state of the TCP socket fd from TCP_INFO
// (tcpi_state), as ss(8) spells it: "LISTEN", "ESTABLISHED", "SYN_SENT"...
func TCPState(fd int) string {
	ginkgo.GinkgoHelper()
	s, err := sock.TCPState(fd)
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "TCP_INFO of descriptor %d", fd)
	return s
}

// SysctlInt reads a setting that is one integer with sock.Sysctl: net.core.somaxconn,
// fs.nr_open. A net.* setting is the calling thread's network namespace's: the host's in a
// spec, the sandbox's in a child.
func SysctlInt(name string) int {
	ginkgo.GinkgoHelper()
	v, err := sock.Sysctl(name)
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "read %s", name)
	n, err := strconv.Atoi(v)
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "%s = %q: not one integer", name, v)
	return n
}
