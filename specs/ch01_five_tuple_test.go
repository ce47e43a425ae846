//go:build linux

package specs

import (
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/lab"
)

var _ = Describe(FiveTuple.Title, Label("chapter:1"), func() {
	for _, fam := range lab.Families() {
		// --8<-- [start:tuple-identity]
		It("tells two connections from one client to one listener apart by the client's port alone, over "+fam.String(),
			Label("claim:tuple.identity", fam.Name), func() {
				lab.RequireFamily(fam)
				l := lab.Listen(fam.At(0), 8)
				clients := []*lab.Sock{lab.Dial(l.Addr), lab.Dial(l.Addr)}
				servers := []*lab.Sock{l.Accept(), l.Accept()}

				c := []sock.Tuple{clients[0].Tuple(), clients[1].Tuple()}
				s := []sock.Tuple{servers[0].Tuple(), servers[1].Tuple()}
				lab.Record(lab.EntryTuples, []lab.TupleSeen{
					{Conn: "first", Client: c[0].String(), Server: s[0].String()},
					{Conn: "second", Client: c[1].String(), Server: s[1].String()},
				})

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
			})
		// --8<-- [end:tuple-identity]

		// --8<-- [start:tuple-unique]
		It("refuses a second connection with the same 4-tuple, and takes it to another port, over "+fam.String(),
			Label("claim:tuple.unique", fam.Name), func() {
				lab.RequireFamily(fam)
				first := lab.Listen(fam.At(0), 8)
				second := lab.Listen(fam.At(0), 8)

				// SO_REUSEADDR on both lets two sockets bind one address and port as long as
				// neither listens (inet_csk_bind_conflict): the kernel does not refuse the
				// duplicate at bind, it waits to see where each connects.
				a := lab.TCPSocket(fam).ReuseAddr()
				shared := a.Bind(fam.At(0))
				b := lab.TCPSocket(fam).ReuseAddr()
				Expect(b.Bind(shared)).To(Equal(shared))

				ta := a.Connect(first.Addr)

				// The same four elements again: connect(2) itself fails with EADDRNOTAVAIL
				// when it finds the 4-tuple already established (__inet_check_established),
				// and sends no SYN.
				err := b.TryConnect(first.Addr)
				lab.Record(lab.EntryErrno, lab.Refused("connect", err, b.LocalAddr(), first.Addr))
				Expect(errors.Is(err, unix.EADDRNOTAVAIL)).To(BeTrue(), "connect: want EADDRNOTAVAIL, got %v", err)

				// Change one element, the destination port, and the same socket, still on
				// the same local address and port, makes a new connection.
				tb := b.Connect(second.Addr)
				sa, sb := first.Accept().Tuple(), second.Accept().Tuple()
				lab.Record(lab.EntryTuples, []lab.TupleSeen{
					{Conn: "to the first listener", Client: ta.String(), Server: sa.String()},
					{Conn: "to the second listener, after EADDRNOTAVAIL", Client: tb.String(), Server: sb.String()},
				})
				Expect(tb.Local).To(Equal(ta.Local), "both connections from one local address and port")
				Expect(tb.Remote).NotTo(Equal(ta.Remote))
				Expect(sa.Mirror()).To(Equal(ta))
				Expect(sb.Mirror()).To(Equal(tb))
			})
		// --8<-- [end:tuple-unique]

		// --8<-- [start:tuple-protocol]
		It("holds one port number in TCP and in UDP at once, each with its own traffic, over "+fam.String(),
			Label("claim:tuple.protocol", fam.Name), func() {
				lab.RequireFamily(fam)
				tcpServer, udpServer, serverAddr := lab.BindTCPAndUDP(fam)
				tcpClient, udpClient, _ := lab.BindTCPAndUDP(fam)
				l := tcpServer.Listen(8)

				tcp := tcpClient.Connect(l.Addr)
				udp := udpClient.Connect(serverAddr) // a UDP connect(2) sends nothing: it fixes the peer
				lab.Record(lab.EntryTuples, []lab.TupleSeen{
					{Conn: "tcp", Client: tcp.String()},
					{Conn: "udp", Client: udp.String()},
				})

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
				lab.Record(lab.EntryTraffic, []lab.TrafficSeen{
					{Proto: tcp.Proto, To: conn.LocalAddr().String(), From: conn.PeerAddr().String(), Payload: string(gotTCP)},
					{Proto: udp.Proto, To: udpServer.LocalAddr().String(), From: from.String(), Payload: string(gotUDP)},
				})
				Expect(string(gotTCP)).To(Equal("over tcp"))
				Expect(string(gotUDP)).To(Equal("over udp"))
				Expect(conn.PeerAddr()).To(Equal(tcp.Local))
				Expect(from).To(Equal(udp.Local))
			})
		// --8<-- [end:tuple-protocol]
	}
})
