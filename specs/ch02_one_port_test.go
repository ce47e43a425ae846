//go:build linux

package specs

import (
	"fmt"
	"net/netip"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

var _ = Describe(OnePort.Title, Label("chapter:2"), func() {
	// Enough connections that a port per connection, or a repeated one, could not hide.
	const connections = 16

	for _, fam := range lab.Families() {
		// --8<-- [start:port-same]
		It("gives every accepted socket the listener's own address and port, "+
			"over "+fam.String(),
			Label("claim:port.same", fam.Name), func() {
				lab.RequireFamily(fam)
				l := lab.Listen(fam.At(0), connections)
				var seen []evidence.TupleSeen
				var server evidence.ServerSockets
				ports := evidence.Ports{"listener": {l.Addr.Port()}}
				// --8<-- [start:port-same-core]
				for i := range connections {
					c := lab.Dial(l.Addr)
					// Dial returned once the client's handshake was done, and everything queued
					// before it was accepted: this accept() returns this client's connection.
					a := l.Accept()
					ct, st := c.Tuple(), a.Tuple()
					conn := fmt.Sprintf("connection %d", i+1)
					seen = append(seen,
						evidence.TupleSeen{Conn: conn, Client: ct.String(), Server: st.String()})
					server.Accepted = append(server.Accepted,
						evidence.AcceptedSocket{Conn: conn, FD: a.FD(), State: lab.TCPState(a.FD())})
					ports["accepted"] = append(ports["accepted"], st.Local.Port())
					ports["clients"] = append(ports["clients"], ct.Local.Port())

					// accept4(2) made a new socket, yet getsockname on it answers the
					// listener's address and port: the server talks on the port it listens on.
					Expect(st.Local).To(Equal(l.Addr), conn)
					// The other end is the client's own address and port, as the client's
					// kernel reports it.
					Expect(st.Remote).To(Equal(ct.Local), conn)
				}
				// --8<-- [end:port-same-core]
				server.Listener = evidence.ListeningSocket{FD: l.FD(), Addr: l.LocalAddr().String(),
					State: lab.TCPState(l.FD())}
				lab.Record(evidence.EntryTuples, seen)
				lab.Record(evidence.EntryPorts, ports)
				lab.Record(evidence.EntryServerSockets, server)
				// With one server port for all, the connections are told apart by the
				// clients' ports, all different.
				Expect(duplicates(ports["clients"])).To(BeEmpty())
				// --8<-- [start:primer-matchers]
				// Each accepted socket is a connection of its own (TCP_INFO: ESTABLISHED), and
				// the listener, after all those accepts, is still the one passive socket (LISTEN).
				Expect(server.Accepted).To(HaveEach(HaveField("State", "ESTABLISHED")))
				Expect(server.Listener.State).To(Equal("LISTEN"))
				// --8<-- [end:primer-matchers]
				var states []string
				for _, a := range server.Accepted {
					states = append(states, a.State)
				}
				lab.Cite(evidence.Figures{"connections": len(ports["accepted"]), "listener": l.Addr.Port(),
					"accepted_ports":      ch2Distinct(ports["accepted"]),
					"client_ports":        len(ch2Distinct(ports["clients"])),
					"lowest_client_port":  slices.Min(ports["clients"]),
					"highest_client_port": slices.Max(ports["clients"]),
					"accepted_states":     ch2Distinct(states),
					"listener_state":      server.Listener.State})
			})
		// --8<-- [end:port-same]

		// --8<-- [start:port-ephemeral]
		// --8<-- [start:primer-proof]
		It("takes each client's source port from ip_local_port_range at connect(), a different "+
			"one each time, over "+fam.String(),
			Label("claim:port.ephemeral", fam.Name), func() {
				lab.RequireFamily(fam)
				r := lab.LocalPortRange()
				lab.Record(evidence.EntryPortRange, r)
				l := lab.Listen(fam.At(0), connections)

				var connected []uint16
				// --8<-- [start:port-ephemeral-core]
				for i := range connections {
					s := lab.TCPSocket(fam)
					// Never bound: getsockname says port 0, no port yet.
					Expect(s.LocalAddr().Port()).To(BeZero())
					// --8<-- [end:primer-proof]
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
				// --8<-- [end:port-ephemeral-core]

				// Observed here, proven in a sandbox below: bind(ip:0) draws from the same
				// range, the parity opposite to its low end's first (inet_csk_find_open_port),
				// where connect() takes the low end's parity first. Shown, never asserted:
				// connect() steps from a per-destination offset by small random amounts
				// (table_perturb in __inet_hash_connect, after RFC 6056). Each socket stays
				// open so that the kernel cannot hand out its port again.
				var bound []uint16
				for range connections {
					bound = append(bound, lab.TCPSocket(fam).Bind(fam.At(0)).Port())
				}
				lab.Record(evidence.EntryPorts,
					evidence.Ports{"listener": {l.Addr.Port()}, "connect": connected, "bind": bound})
				lab.Record(evidence.EntryPortPattern, evidence.PortPattern{
					Parity: map[string]evidence.Parity{
						"connect": evidence.ParityOf(connected), "bind": evidence.ParityOf(bound)},
					Steps: lab.StepsOf(connected),
				})

				// Different ports for connections that are open at once: no two of them
				// share a 4-tuple.
				Expect(duplicates(connected)).To(BeEmpty())
				lab.Cite(evidence.Figures{"range_low": r.Low, "range_high": r.High,
					"connections": len(connected), "connect_ports": connected,
					"steps": lab.StepsOf(connected), "bind_ports": bound})
			})
		// --8<-- [end:port-ephemeral]

		// --8<-- [start:port-parity]
		It("gives connect() the ports of the parity of the range's low end first, and bind(ip:0) "+
			"the other parity, over "+fam.String(),
			Label("claim:port.ephemeral", fam.Name), func() {
				lab.RequireFamily(fam)
				var rows []evidence.PortParity
				figures := evidence.Figures{}
				lows := map[string]bool{}
				for _, narrowed := range ch2ParityRanges {
					seen := lab.RunInSandbox(ch2ParityChild, fam.At(ch2ServerPort), lab.SandboxOptions{
						Sysctls: map[string]string{lab.PortRangeSysctl: narrowed},
					})
					r, low := seen.Range, evidence.ParityName(seen.Range.Low)
					lows[low] = true
					rows = append(rows, evidence.PortParity{Range: r.String(), Low: low,
						Connect: seen.Connect, Bind: seen.Bind})
					lab.Record(evidence.EntryPortParity, rows[len(rows)-1])

					// --8<-- [start:port-parity-core]
					// Every port of the range, once each, to connect() and to bind(ip:0) alike,
					// as the child's getsockname read them...
					Expect(r.Size%2).To(BeZero(), "%s %s: as many ports of each parity", r.Sysctl, r)
					half := r.Size / 2
					byRole := map[string][]uint16{"connect": seen.Connect, "bind": seen.Bind}
					for role, ports := range byRole {
						Expect(ports).To(HaveLen(r.Size), role)
						Expect(duplicates(ports)).To(BeEmpty(), role)
						Expect(ports).To(HaveEach(WithTransform(r.Contains, BeTrue())),
							"%s: ports %v outside %s", role, ports, r)
					}
					// ...connect() all those of the low end's parity before any other
					// (__inet_hash_connect starts from an offset with its low bit cleared)...
					lowParity := WithTransform(evidence.ParityName, Equal(low))
					Expect(seen.Connect[:half]).To(HaveEach(lowParity),
						"connect() in %s: %v", r, seen.Connect)
					Expect(seen.Connect[half:]).NotTo(ContainElement(lowParity),
						"connect() in %s: %v", r, seen.Connect)
					// ...and bind(ip:0) the other way round (inet_csk_find_open_port sets that
					// bit), so that the two rarely take the same ports.
					Expect(seen.Bind[:half]).NotTo(ContainElement(lowParity),
						"bind(0) in %s: %v", r, seen.Bind)
					Expect(seen.Bind[half:]).To(HaveEach(lowParity), "bind(0) in %s: %v", r, seen.Bind)
					// --8<-- [end:port-parity-core]

					figures[low+"_range"] = fmt.Sprintf("%d-%d", r.Low, r.High)
					figures[low+"_connect"] = seen.Connect[:half]
					figures[low+"_bind"] = seen.Bind[:half]
					figures["half"] = half
				}
				// The rule follows the low end, not a fixed parity: the two ranges, as their
				// kernels read them back, start on an even and on an odd port.
				Expect(lows).To(HaveLen(2), "low ends of %v", rows)
				lab.Cite(figures)
			})
		// --8<-- [end:port-parity]
	}
})

// --8<-- [start:port-parity-child]

// ch2ParityRanges are net.ipv4.ip_local_port_range in port.ephemeral's parity proof, one
// sandbox each: ten ports, five of each parity, starting on an even port and on an odd one.
var ch2ParityRanges = []string{"40000 40009", "40001 40010"}

// ch2ServerPort is where the parity child listens: outside both ranges, so that the listener
// holds none of their ports.
const ch2ServerPort = 20000

// ch2ParitySeen is what the parity child read from its kernel.
type ch2ParitySeen struct {
	Range   evidence.PortRange // net.ipv4.ip_local_port_range, read back in the child's namespace
	Bind    []uint16           // bind(ip:0) of new sockets, in order, until the range was full
	Connect []uint16           // then connect() of new, unbound sockets to one listener, in order
}

// ch2ParityChild fills the range twice, in a namespace of its own where no other socket
// holds a port: first with bind(ip:0), then, those sockets closed, with connect().
var ch2ParityChild = lab.RegisterChild("ch2.port.ephemeral.parity", ch2FillRangeTwice)

// ch2FillRangeTwice is the parity child's body, with a listener at server.
func ch2FillRangeTwice(server netip.AddrPort) (ch2ParitySeen, error) {
	var seen ch2ParitySeen
	r, err := lab.ReadPortRange()
	if err != nil {
		return seen, err
	}
	seen.Range = r
	l, _, err := lab.ListenOn(server, 64)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)

	var fds []int
	defer func() { lab.CloseAll(fds) }()
	for range r.Size {
		fd, err := sock.Socket(sock.Family(server))
		if err != nil {
			return seen, err
		}
		fds = append(fds, fd)
		// Each socket stays open, so that bind(2) has to find a new port every time.
		if err := sock.Bind(fd, netip.AddrPortFrom(server.Addr(), 0)); err != nil {
			return seen, fmt.Errorf("bind number %d: %w", len(seen.Bind)+1, err)
		}
		at, err := sock.LocalAddr(fd)
		if err != nil {
			return seen, err
		}
		seen.Bind = append(seen.Bind, at.Port())
	}
	// A socket that was only bound gives its port back at close(2): connect() then finds the
	// whole range free.
	lab.CloseAll(fds)
	fds = nil

	for range r.Size {
		fd, err := lab.DialTo(server)
		if err != nil {
			return seen, fmt.Errorf("connect number %d: %w", len(seen.Connect)+1, err)
		}
		fds = append(fds, fd)
		at, err := sock.LocalAddr(fd)
		if err != nil {
			return seen, err
		}
		seen.Connect = append(seen.Connect, at.Port())
	}
	return seen, nil
}

// --8<-- [end:port-parity-child]

// ch2Distinct lists each value once, in the order first seen.
func ch2Distinct[T comparable](values []T) []T {
	var d []T
	for _, v := range values {
		if !slices.Contains(d, v) {
			d = append(d, v)
		}
	}
	return d
}

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
