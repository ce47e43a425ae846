//go:build linux

package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// Bounds on every wait. On loopback a handshake or a segment takes microseconds; the margin
// is for a loaded CI machine running under -race, and each still ends the wait.
const (
	ConnectWithin = 5 * time.Second // sock.Connect: the handshake, or its error
	AcceptWithin  = 5 * time.Second // poll(POLLIN) on a listener: a connection queued
	ReadWithin    = 5 * time.Second // poll(POLLIN) on a connection: data has arrived
)

// Sock is a socket a spec owns, one descriptor. The spec's DeferCleanup closes it whatever
// the outcome; Close closes it sooner, once: after close(2) the kernel hands the same number
// to the next socket, and a second close would shut that one.
type Sock struct {
	mu sync.Mutex
	fd int
}

// CloseAll closes every descriptor of fds: what a child or a spec opened by the dozen, at
// its end. An error of close(2) is not looked at: the descriptors are done with.
func CloseAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// ownSocket hands fd to the running spec: DeferCleanup closes it when the spec ends.
func ownSocket(fd int) *Sock {
	ginkgo.GinkgoHelper()
	s := &Sock{fd: fd}
	ginkgo.DeferCleanup(s.Close)
	return s
}

// FD is the descriptor, for a syscall lab does not wrap; -1 once closed.
func (s *Sock) FD() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fd
}

// Close closes the descriptor, once.
func (s *Sock) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	fd := s.fd
	s.fd = -1
	return os.NewSyscallError("close", unix.Close(fd))
}

// TCPSocket is sock.Socket: socket(2) for a non-blocking TCP endpoint, with no
// address yet.
func TCPSocket(f Family) *Sock {
	ginkgo.GinkgoHelper()
	fd, err := sock.Socket(f.Domain)
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "socket(%s, SOCK_STREAM)", f.Name)
	return ownSocket(fd)
}

// UDPSocket is a non-blocking UDP socket. refserver speaks TCP only; this is the one kind of
// socket lab makes itself, with the same flags as sock.Socket, so that tuple.protocol
// can hold one port number in both protocols.
func UDPSocket(f Family) *Sock {
	ginkgo.GinkgoHelper()
	fd, err := unix.Socket(f.Domain, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	gomega.Expect(os.NewSyscallError("socket", err)).NotTo(gomega.HaveOccurred(), "socket(%s, SOCK_DGRAM)", f.Name)
	return ownSocket(fd)
}

// ReuseAddr is sock.SetReuseAddr: SO_REUSEADDR, before bind.
func (s *Sock) ReuseAddr() *Sock {
	ginkgo.GinkgoHelper()
	gomega.Expect(sock.SetReuseAddr(s.FD())).To(gomega.Succeed())
	return s
}

// TryBind is sock.Bind, with the kernel's answer returned, for the specs that expect
// an errno.
func (s *Sock) TryBind(at netip.AddrPort) error { return sock.Bind(s.FD(), at) }

// Bind is sock.Bind, which must succeed, and returns the address the kernel bound:
// with port 0 the port is the kernel's choice, read back with getsockname.
func (s *Sock) Bind(at netip.AddrPort) netip.AddrPort {
	ginkgo.GinkgoHelper()
	gomega.Expect(s.TryBind(at)).To(gomega.Succeed(), "bind %s", at)
	return s.LocalAddr()
}

// LocalAddr is sock.LocalAddr, getsockname(2). Before bind or connect the port is 0.
func (s *Sock) LocalAddr() netip.AddrPort {
	ginkgo.GinkgoHelper()
	ap, err := sock.LocalAddr(s.FD())
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	return ap
}

// PeerAddr is sock.PeerAddr, getpeername(2).
func (s *Sock) PeerAddr() netip.AddrPort {
	ginkgo.GinkgoHelper()
	ap, err := sock.PeerAddr(s.FD())
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	return ap
}

// Tuple is sock.TupleOf: the connection's 5-tuple as the kernel holds it for this end.
func (s *Sock) Tuple() sock.Tuple {
	ginkgo.GinkgoHelper()
	t, err := sock.TupleOf(s.FD())
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	return t
}

// TryConnect is sock.Connect, with the kernel's answer returned: nil once the
// handshake is done, or the errno of connect(2) or SO_ERROR.
func (s *Sock) TryConnect(to netip.AddrPort) error {
	return sock.Connect(s.FD(), to, ConnectWithin)
}

// Connect is sock.Connect, which must succeed, and returns the connection's tuple.
func (s *Sock) Connect(to netip.AddrPort) sock.Tuple {
	ginkgo.GinkgoHelper()
	gomega.Expect(s.TryConnect(to)).To(gomega.Succeed(), "connect to %s", to)
	return s.Tuple()
}

// Dial connects a new, unbound TCP socket to `to`: the client's kernel chooses its source
// address and port.
func Dial(to netip.AddrPort) *Sock {
	ginkgo.GinkgoHelper()
	s := TCPSocket(familyOf(to))
	s.Connect(to)
	return s
}

// Listener is a passive socket and the address the kernel bound it to.
type Listener struct {
	*Sock
	Addr netip.AddrPort // getsockname(2) after bind: the port is the kernel's when at asked for 0
}

// Listen makes a listener with refserver's steps: Socket, Bind, Listen.
func Listen(at netip.AddrPort, backlog int) *Listener {
	ginkgo.GinkgoHelper()
	s := TCPSocket(familyOf(at))
	s.Bind(at)
	return s.Listen(backlog)
}

// Listen is sock.Listen on a bound TCP socket: from now on it is passive.
func (s *Sock) Listen(backlog int) *Listener {
	ginkgo.GinkgoHelper()
	gomega.Expect(sock.Listen(s.FD(), backlog)).To(gomega.Succeed())
	return &Listener{Sock: s, Addr: s.LocalAddr()}
}

// BindTCPAndUDP binds a TCP socket to a port the kernel chooses and a UDP socket to the
// same address and port number. TCP and UDP ports live in separate tables (the TCP bind
// hash and udp_table), so the kernel's choice for TCP says nothing of UDP: another
// program's UDP socket may hold that number, and then the UDP bind fails with EADDRINUSE
// and another port is tried, a few times at most.
func BindTCPAndUDP(f Family) (tcp, udp *Sock, at netip.AddrPort) {
	ginkgo.GinkgoHelper()
	var last error
	for attempt := 0; attempt < 8; attempt++ {
		tcp = TCPSocket(f)
		at = tcp.Bind(f.At(0))
		udp = UDPSocket(f)
		last = udp.TryBind(at)
		if last == nil {
			return tcp, udp, at
		}
		gomega.Expect(errors.Is(last, unix.EADDRINUSE)).To(gomega.BeTrue(), "bind udp %s: %v", at, last)
		tcp.Close()
		udp.Close()
	}
	ginkgo.Fail(fmt.Sprintf("no port free in both TCP and UDP after 8 tries: %v", last))
	return nil, nil, netip.AddrPort{}
}

// TryAccept is AcceptOn for a spec: the accepted socket is the spec's, closed when it ends.
func (l *Listener) TryAccept(within time.Duration) (*Sock, error) {
	fd, _, err := AcceptOn(l.FD(), within)
	if err != nil {
		return nil, fmt.Errorf("accept on %s: %w", l.Addr, err)
	}
	return ownSocket(fd), nil
}

// Accept is TryAccept, which must succeed within AcceptWithin.
func (l *Listener) Accept() *Sock {
	ginkgo.GinkgoHelper()
	s, err := l.TryAccept(AcceptWithin)
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "accept on %s", l.Addr)
	return s
}

// Send writes all of b with write(2). The payloads the specs send are small; a loopback
// socket buffer takes them whole, and poll(POLLOUT) covers a full one.
func (s *Sock) Send(b []byte) {
	ginkgo.GinkgoHelper()
	deadline := time.Now().Add(ReadWithin)
	for attempt := 0; len(b) > 0 && attempt < 1000; attempt++ {
		n, err := unix.Write(s.FD(), b)
		if errors.Is(err, unix.EAGAIN) {
			gomega.Expect(WaitFor(s.FD(), unix.POLLOUT, time.Until(deadline))).To(gomega.Succeed())
			continue
		}
		gomega.Expect(os.NewSyscallError("write", err)).NotTo(gomega.HaveOccurred())
		b = b[n:]
	}
	gomega.Expect(b).To(gomega.BeEmpty(), "write: bytes left after 1000 attempts")
}

// Read reads exactly n bytes from a connected socket, waiting at most ReadWithin in all.
// TCP is a byte stream: what one write sent may arrive in several reads.
func (s *Sock) Read(n int) []byte {
	ginkgo.GinkgoHelper()
	got := make([]byte, 0, n)
	buf := make([]byte, n)
	deadline := time.Now().Add(ReadWithin)
	for attempt := 0; len(got) < n && attempt < 1000; attempt++ {
		gomega.Expect(WaitFor(s.FD(), unix.POLLIN, time.Until(deadline))).To(gomega.Succeed(), "waiting for %d bytes, have %d", n, len(got))
		m, err := unix.Read(s.FD(), buf[:n-len(got)])
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		gomega.Expect(os.NewSyscallError("read", err)).NotTo(gomega.HaveOccurred())
		// read(2) returning 0 is end-of-stream: the peer sent FIN.
		gomega.Expect(m).NotTo(gomega.BeZero(), "end of stream after %d of %d bytes", len(got), n)
		got = append(got, buf[:m]...)
	}
	return got
}

// ReceiveFrom waits for one datagram on a UDP socket and returns it with its sender, as
// recvfrom(2) gives them.
func (s *Sock) ReceiveFrom() ([]byte, netip.AddrPort) {
	ginkgo.GinkgoHelper()
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(ReadWithin)
	for attempt := 0; attempt < 1000; attempt++ {
		gomega.Expect(WaitFor(s.FD(), unix.POLLIN, time.Until(deadline))).To(gomega.Succeed(), "waiting for a datagram")
		n, from, err := unix.Recvfrom(s.FD(), buf, 0)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		gomega.Expect(os.NewSyscallError("recvfrom", err)).NotTo(gomega.HaveOccurred())
		return buf[:n], sock.AddrPort(from)
	}
	ginkgo.Fail("recvfrom: EAGAIN 1000 times in a row")
	return nil, netip.AddrPort{}
}

// WaitFor is sock.WaitFor, poll(2) on one descriptor for events at most within, the one
// bounded wait the specs and their sandbox children share with refserver's Connect.
func WaitFor(fd int, events int16, within time.Duration) error {
	return sock.WaitFor(fd, events, within)
}

func familyOf(ap netip.AddrPort) Family {
	if sock.Family(ap) == unix.AF_INET {
		return IPv4
	}
	return IPv6
}
