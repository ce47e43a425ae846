//go:build linux

package lab

import (
	"fmt"
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

// AcceptQueue is sock.AcceptQueueOf: the listener fd's accept queue from TCP_INFO, the
// connections in it (tcpi_unacked) and its limit (tcpi_sacked).
func AcceptQueue(fd int) sock.AcceptQueue {
	ginkgo.GinkgoHelper()
	q, err := sock.AcceptQueueOf(fd)
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "TCP_INFO of listener %d", fd)
	return q
}

// SysctlInt reads a setting that is one integer with sock.Sysctl: net.core.somaxconn,
// fs.nr_open. A net.* setting is the calling thread's network namespace's: the host's in a
// spec, the sandbox's in a child. A child, which has no spec to fail, calls ReadSysctlInt.
func SysctlInt(name string) int {
	ginkgo.GinkgoHelper()
	n, err := ReadSysctlInt(name)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	return n
}

// ReadSysctlInt is SysctlInt's error-returning twin, for a sandbox child (see plain.go).
func ReadSysctlInt(name string) (int, error) {
	v, err := sock.Sysctl(name)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s = %q: not one integer", name, v)
	}
	return n, nil
}
