//go:build linux

package specs

import (
	"errors"
	"os"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

var _ = Describe(FiveTuple.Title, Label("chapter:1"), func() {
	for _, fam := range lab.Families() {
		// --8<-- [start:tuple-identity]
		It("tells two connections from one client to one listener apart by the client's port "+
			"alone, over "+fam.String(),
			Label("claim:tuple.identity", fam.Name), func() {
				lab.RequireFamily(fam)
				l := lab.Listen(fam.At(0), 8)
				clients := []*lab.Sock{lab.Dial(l.Addr), lab.Dial(l.Addr)}
				servers := []*lab.Sock{l.Accept(), l.Accept()}

				c := []sock.Tuple{clients[0].Tuple(), clients[1].Tuple()}
				s := []sock.Tuple{servers[0].Tuple(), servers[1].Tuple()}
				lab.Record(evidence.EntryTuples, []evidence.TupleSeen{
					{Conn: "first", Client: c[0].String(), Server: s[0].String()},
					{Conn: "second", Client: c[1].String(), Server: s[1].String()},
				})
				lab.Cite(evidence.Figures{"first": c[0].String(), "second": c[1].String(),
					"listener":     l.Addr.String(),
					"client_ports": []uint16{c[0].Local.Port(), c[1].Local.Port()}})

				// --8<-- [start:tuple-identity-core]
				// Each end asks the kernel for its own view, getsockname and getpeername on
				// its own descriptor: the accepted sockets hold exactly the clients' tuples,
				// ends swapped. Pairing is left to ConsistOf, since the order of accept() is
				// the order handshakes finished, not the order connect() was called.
				Expect([]sock.Tuple{s[0].Mirror(), s[1].Mirror()}).To(ConsistOf(c[0], c[1]))

				// Both connections go to the listener's own address and port (its
				// getsockname), from the same client address, in the same protocol
				// (SO_PROTOCOL)...
				Expect(c[0].Remote).To(Equal(l.Addr))
				Expect(c[1].Remote).To(Equal(c[0].Remote))
				Expect(c[1].Local.Addr()).To(Equal(c[0].Local.Addr()))
				Expect(c[1].Proto).To(Equal(c[0].Proto))
				// ...so the one element left to tell them apart is the port the client's
				// kernel chose for each.
				Expect(c[1].Local.Port()).NotTo(Equal(c[0].Local.Port()))
				// --8<-- [end:tuple-identity-core]
			})
		// --8<-- [end:tuple-identity]

		// --8<-- [start:tuple-unique]
		It("refuses a second connection with the same 4-tuple, and takes it to another port, "+
			"over "+fam.String(),
			Label("claim:tuple.unique", fam.Name), func() {
				lab.RequireFamily(fam)
				// SO_REUSEADDR on the first listener too: the bind refused beside it below is
				// refused because it listens, not for want of the option.
				listener := lab.TCPSocket(fam).ReuseAddr()
				listener.Bind(fam.At(0))
				first := listener.Listen(8)
				second := lab.Listen(fam.At(0), 8)

				a := lab.TCPSocket(fam).ReuseAddr()
				shared := a.Bind(fam.At(0))
				ta := a.Connect(first.Addr)

				// With SO_REUSEADDR on both, a second socket binds the address and port of one
				// that is connected (TCP_INFO: ESTABLISHED), and a third is refused beside a
				// listener (LISTEN) with EADDRINUSE: inet_csk_bind_conflict lets sockets with
				// SO_REUSEADDR share unless one of them listens. So the kernel does not refuse
				// the duplicate at bind; it waits to see where each connects.
				held, err := sock.TCPState(a.FD())
				Expect(err).NotTo(HaveOccurred())
				b := lab.TCPSocket(fam).ReuseAddr()
				besideConnected := b.TryBind(shared)
				listening, err := sock.TCPState(first.FD())
				Expect(err).NotTo(HaveOccurred())
				besideListener := lab.TCPSocket(fam).ReuseAddr().TryBind(first.Addr)
				lab.Record(ch1EntryBinds, []ch1Bind{
					{Addr: shared.String(), Holder: held, Result: ch1BindResult(besideConnected)},
					{Addr: first.Addr.String(), Holder: listening, Result: ch1BindResult(besideListener)},
				})
				Expect(held).To(Equal("ESTABLISHED"))
				Expect(besideConnected).To(Succeed(), "bind %s beside a connected socket", shared)
				Expect(b.LocalAddr()).To(Equal(shared))
				Expect(listening).To(Equal("LISTEN"))
				Expect(errors.Is(besideListener, unix.EADDRINUSE)).To(BeTrue(),
					"bind %s beside a listener: want EADDRINUSE, got %v", first.Addr, besideListener)

				// --8<-- [start:tuple-unique-core]
				// The same four elements again: the non-blocking connect(2) returns
				// EADDRNOTAVAIL itself, not EINPROGRESS. It found the 4-tuple already
				// established (__inet_check_established, __inet6_check_established) before
				// it sent any SYN.
				to, err := sock.Sockaddr(first.Addr)
				Expect(err).NotTo(HaveOccurred())
				refused := os.NewSyscallError("connect", unix.Connect(b.FD(), to))
				lab.Record(evidence.EntryErrno, lab.Refused("connect", refused, b.LocalAddr(), first.Addr))
				Expect(errors.Is(refused, unix.EADDRNOTAVAIL)).To(BeTrue(),
					"connect: want EADDRNOTAVAIL at once, got %v", refused)

				// Change one element, the destination port, and the same socket, still on
				// the same local address and port, makes a new connection.
				tb := b.Connect(second.Addr)
				sa, sb := first.Accept().Tuple(), second.Accept().Tuple()
				lab.Record(evidence.EntryTuples, []evidence.TupleSeen{
					{Conn: "to the first listener", Client: ta.String(), Server: sa.String()},
					{Conn: "to the second listener, after EADDRNOTAVAIL",
						Client: tb.String(), Server: sb.String()},
				})
				Expect(tb.Local).To(Equal(ta.Local), "both connections from one local address and port")
				Expect(tb.Remote).NotTo(Equal(ta.Remote))
				Expect(sa.Mirror()).To(Equal(ta))
				Expect(sb.Mirror()).To(Equal(tb))
				// --8<-- [end:tuple-unique-core]
				lab.Cite(evidence.Figures{"shared": shared.String(), "held": held, "listening": listening,
					"bind_errno":    sock.ErrnoName(besideListener),
					"connect_errno": sock.ErrnoName(refused),
					"first":         ta.String(), "second": tb.String()})
			})
		// --8<-- [end:tuple-unique]

		// --8<-- [start:tuple-protocol]
		It("holds one port number in TCP and in UDP at once, each with its own traffic, over "+
			fam.String(),
			Label("claim:tuple.protocol", fam.Name), func() {
				lab.RequireFamily(fam)
				tcpServer, udpServer, serverAddr := lab.BindTCPAndUDP(fam)
				tcpClient, udpClient, _ := lab.BindTCPAndUDP(fam)
				l := tcpServer.Listen(8)

				tcp := tcpClient.Connect(l.Addr)
				udp := udpClient.Connect(serverAddr) // a UDP connect(2) sends nothing: it fixes the peer
				lab.Record(evidence.EntryTuples, []evidence.TupleSeen{
					{Conn: "tcp", Client: tcp.String()},
					{Conn: "udp", Client: udp.String()},
				})

				// --8<-- [start:tuple-protocol-core]
				// Both servers hold one port number at once: getsockname on the listener and
				// on the UDP socket give the same address and port.
				Expect(udpServer.LocalAddr()).To(Equal(l.Addr))

				// The kernel reports the same four elements for both clients, and a different
				// protocol (SO_PROTOCOL): two 5-tuples that differ only in the protocol.
				Expect(udp.Local).To(Equal(tcp.Local))
				Expect(udp.Remote).To(Equal(tcp.Remote))
				Expect(udp.Proto).NotTo(Equal(tcp.Proto))

				// Both carry traffic, and each protocol's data reaches that protocol's
				// socket only.
				tcpClient.Send([]byte("over tcp"))
				udpClient.Send([]byte("over udp"))
				conn := l.Accept()
				gotTCP := conn.Read(len("over tcp"))
				gotUDP, from := udpServer.ReceiveFrom()
				lab.Record(evidence.EntryTraffic, []evidence.TrafficSeen{
					{Proto: tcp.Proto, To: conn.LocalAddr().String(), From: conn.PeerAddr().String(),
						Payload: string(gotTCP)},
					{Proto: udp.Proto, To: udpServer.LocalAddr().String(), From: from.String(),
						Payload: string(gotUDP)},
				})
				Expect(string(gotTCP)).To(Equal("over tcp"))
				Expect(string(gotUDP)).To(Equal("over udp"))
				Expect(conn.PeerAddr()).To(Equal(tcp.Local))
				Expect(from).To(Equal(udp.Local))
				// --8<-- [end:tuple-protocol-core]
				lab.Cite(evidence.Figures{"port": l.Addr.Port(), "client_port": tcp.Local.Port(),
					"tcp": tcp.String(), "udp": udp.String()})
			})
		// --8<-- [end:tuple-protocol]
	}
})

// ch1EntryBinds names tuple.unique's evidence of bind(2) with SO_REUSEADDR onto an address
// and port another socket holds.
const ch1EntryBinds = "binds"

// ch1Bind is one such bind: where, beside a socket in which state, and what the kernel said.
type ch1Bind struct {
	Addr   string `json:"addr"`   // the address and port asked for
	Holder string `json:"holder"` // the state of the socket already on it, from TCP_INFO
	Result string `json:"result"` // "bound", or bind(2)'s errno
}

func ch1BindResult(err error) string {
	if err == nil {
		return "bound"
	}
	if name := sock.ErrnoName(err); name != "" {
		return name
	}
	return err.Error()
}
