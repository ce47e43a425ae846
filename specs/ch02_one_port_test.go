//go:build linux

package specs

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"portproof/specs/lab"
)

var _ = Describe(OnePort.Title, Label("chapter:2"), func() {
	// Enough connections that a port per connection, or a repeated one, could not hide.
	const connections = 16

	for _, fam := range lab.Families() {
		// --8<-- [start:port-same]
		It("gives every accepted socket the listener's own address and port, over "+fam.String(),
			Label("claim:port.same", fam.Name), func() {
				lab.RequireFamily(fam)
				l := lab.Listen(fam.At(0), connections)
				var seen []lab.TupleSeen
				ports := lab.Ports{"listener": {l.Addr.Port()}}
				for i := range connections {
					c := lab.Dial(l.Addr)
					// Dial returned once the client's handshake was done, and everything queued
					// before it was accepted: this accept() returns this client's connection.
					a := l.Accept()
					ct, st := c.Tuple(), a.Tuple()
					seen = append(seen, lab.TupleSeen{Conn: fmt.Sprintf("connection %d", i+1), Client: ct.String(), Server: st.String()})
					ports["accepted"] = append(ports["accepted"], st.Local.Port())
					ports["clients"] = append(ports["clients"], ct.Local.Port())

					// accept4(2) made a new socket, yet getsockname on it answers the
					// listener's address and port: the server talks on the port it listens on.
					Expect(st.Local).To(Equal(l.Addr), "connection %d", i)
					// The other end is the client's own address and port, as the client's
					// kernel reports it.
					Expect(st.Remote).To(Equal(ct.Local), "connection %d", i)
				}
				lab.Record(lab.EntryTuples, seen)
				lab.Record(lab.EntryPorts, ports)
				// With one server port for all, the connections are told apart by the
				// clients' ports, all different.
				Expect(duplicates(ports["clients"])).To(BeEmpty())
			})
		// --8<-- [end:port-same]

		// --8<-- [start:port-ephemeral]
		It("takes each client's source port from ip_local_port_range at connect(), a different one each time, over "+fam.String(),
			Label("claim:port.ephemeral", fam.Name), func() {
				lab.RequireFamily(fam)
				r := lab.LocalPortRange()
				lab.Record(lab.EntryPortRange, r)
				l := lab.Listen(fam.At(0), connections)

				var connected []uint16
				for i := range connections {
					s := lab.TCPSocket(fam)
					// Never bound: getsockname says port 0, the socket has none yet.
					Expect(s.LocalAddr().Port()).To(BeZero())
					t := s.Connect(l.Addr)
					// connect(2) bound it implicitly (inet_hash_connect): the client's kernel
					// chose the port, from net.ipv4.ip_local_port_range, for IPv6 too.
					p := t.Local.Port()
					connected = append(connected, p)
					Expect(p).To(SatisfyAll(BeNumerically(">=", r.Low), BeNumerically("<=", r.High)),
						"connection %d: port %d outside %s %s", i, p, r.Sysctl, r)
					// The server sees the very port the client's kernel chose (getpeername).
					Expect(l.Accept().PeerAddr()).To(Equal(t.Local), "connection %d", i)
				}

				// Observed, not asserted: bind(ip:0) draws from the same range, odd ports
				// first (inet_csk_find_open_port), where connect() tries even ports first
				// and steps up from a per-destination offset (__inet_hash_connect, RFC 6056).
				// Each socket stays open so that the kernel cannot hand out its port again.
				var bound []uint16
				for range connections {
					bound = append(bound, lab.TCPSocket(fam).Bind(fam.At(0)).Port())
				}
				lab.Record(lab.EntryPorts, lab.Ports{"listener": {l.Addr.Port()}, "connect": connected, "bind": bound})
				lab.Record(lab.EntryPortPattern, lab.PortPattern{
					Parity: map[string]lab.Parity{"connect": lab.ParityOf(connected), "bind": lab.ParityOf(bound)},
					Steps:  lab.StepsOf(connected),
				})

				// Different ports for connections that are open at once: no two of them
				// share a 4-tuple.
				Expect(duplicates(connected)).To(BeEmpty())
			})
		// --8<-- [end:port-ephemeral]
	}
})

// duplicates lists the ports that occur more than once.
func duplicates(ports []uint16) []uint16 {
	seen := map[uint16]int{}
	var dup []uint16
	for _, p := range ports {
		if seen[p]++; seen[p] == 2 {
			dup = append(dup, p)
		}
	}
	return dup
}
