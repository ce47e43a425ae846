//go:build linux

package specs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"portproof/refserver"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

var _ = Describe(ActivePassive.Title, Label("chapter:6"), func() {
	for _, fam := range lab.Families() {
		// --8<-- [start:passive-no-data]
		It("gives a listening socket no peer and no data, only connections to accept, over "+
			fam.String(), Label("claim:passive.no-data", fam.Name), func() {
			lab.RequireFamily(fam)
			s := lab.TCPSocket(fam)
			s.Bind(fam.At(0))
			// Bound but not listening: neither passive nor active yet.
			bound := ch6Describe("bound, before listen", s.FD())
			l := s.Listen(8)

			// A client connects and sends before anything is accepted: the handshake and
			// the bytes are the kernel's business, queued with the connection, not on
			// the listener.
			c := lab.Dial(l.Addr)
			c.Send([]byte("hello"))
			Eventually(func() uint32 { return lab.AcceptQueue(l.FD()).Len }).
				WithTimeout(lab.AcceptWithin).
				Should(BeEquivalentTo(1), "the client's connection in the listener's accept queue")

			// refused records the call that failed on the listener, and wants the errno.
			cited := evidence.Figures{}
			refused := func(call string, err error, want unix.Errno) {
				lab.Record(evidence.EntryErrno, lab.Refused(call, err, l.Addr, netip.AddrPort{}))
				Expect(errors.Is(err, want)).To(BeTrue(),
					"%s on the listener: want %s, got %v", call, unix.ErrnoName(want), err)
				cited[call+"_errno"] = sock.ErrnoName(err)
			}
			buf := make([]byte, 16)
			// --8<-- [start:passive-no-data-core]
			// read(2) and recv(2): tcp_recvmsg answers ENOTCONN for a socket in LISTEN,
			// even with a connection and its data waiting behind it.
			_, err := unix.Read(l.FD(), buf)
			refused("read", os.NewSyscallError("read", err), unix.ENOTCONN)
			_, _, err = unix.Recvfrom(l.FD(), buf, 0)
			refused("recv", os.NewSyscallError("recvfrom", err), unix.ENOTCONN)
			// getpeername(2): no other end. inet_getname (and inet6_getname) answers
			// ENOTCONN for a socket with no peer port, and a listener's inet_dport is 0.
			_, err = sock.PeerAddr(l.FD())
			refused("getpeername", err, unix.ENOTCONN)
			// send(2): tcp_sendmsg waits for a connection only in SYN_SENT or SYN_RECV; in
			// LISTEN sk_stream_wait_connect answers EPIPE (MSG_NOSIGNAL: with no SIGPIPE).
			err = unix.Sendto(l.FD(), []byte("x"), unix.MSG_NOSIGNAL, nil)
			refused("send", os.NewSyscallError("sendto", err), unix.EPIPE)
			cited["queued"] = lab.AcceptQueue(l.FD()).Len // every call met a connection queued
			// SO_ACCEPTCONN, the kernel's flag for "passive": 1 in TCP_LISTEN, else 0.
			listener := ch6Describe("listener", l.FD())
			Expect(bound.AcceptConn).To(BeZero(), "SO_ACCEPTCONN before listen")
			Expect(listener.AcceptConn).To(Equal(1), "SO_ACCEPTCONN on the listener")
			Expect(listener.State).To(Equal("LISTEN"))
			// --8<-- [end:passive-no-data-core]
			lab.Cite(cited)

			// The socket the listener spawns is the active one, with the peer and the data.
			a := l.Accept()
			sockets := []evidence.SocketSeen{bound, listener,
				ch6Describe("client", c.FD()), ch6Describe("accepted", a.FD())}
			lab.Record(evidence.EntrySocketKinds, sockets)
			for _, active := range sockets[2:] {
				Expect(active.AcceptConn).To(BeZero(), "SO_ACCEPTCONN on the %s", active.Role)
				Expect(active.State).To(Equal("ESTABLISHED"), "the %s", active.Role)
			}

			got := a.Read(len("hello"))
			lab.Record(evidence.EntryTraffic, []evidence.TrafficSeen{{Proto: "tcp",
				To: a.LocalAddr().String(), From: a.PeerAddr().String(), Payload: string(got)}})
			Expect(string(got)).To(Equal("hello"))
			Expect(a.PeerAddr()).To(Equal(c.LocalAddr()))
			lab.Cite(evidence.Figures{
				"bound_fd": sockets[0].FD, "bound_state": sockets[0].State,
				"bound_acceptconn": sockets[0].AcceptConn, "listener_fd": sockets[1].FD,
				"listener_state": sockets[1].State, "listener_acceptconn": sockets[1].AcceptConn,
				"client_state": sockets[2].State, "client_acceptconn": sockets[2].AcceptConn,
				"accepted_state": sockets[3].State, "accepted_acceptconn": sockets[3].AcceptConn,
				"accepted_read": string(got), "accepted_peer": sockets[3].Peer,
			})
		})
		// --8<-- [end:passive-no-data]

		// --8<-- [start:passive-spawns-active]
		It("spawns a new descriptor for each connection at accept(), while the listener goes on "+
			"listening, over "+fam.String(),
			Label("claim:passive.spawns-active", fam.Name), func() {
				lab.RequireFamily(fam)
				const connections = 8
				l := lab.Listen(fam.At(0), connections)
				var seen evidence.DescriptorsSpawned
				var sockets []evidence.SocketSeen
				var tuples []evidence.TupleSeen
				defer func() {
					lab.Record(evidence.EntryDescriptorsSpawned, seen)
					lab.Record(evidence.EntrySocketKinds, sockets)
					lab.Record(evidence.EntryTuples, tuples)
				}()
				seen.Listener = l.FD()
				var clients, accepted []*lab.Sock
				// --8<-- [start:passive-spawns-active-core]
				seen.Before = ch6Descriptors() // the process's descriptors, in /proc/self/fd
				for range connections {
					clients = append(clients, lab.Dial(l.Addr))
				}
				seen.AfterConnect = ch6Descriptors()
				// The handshakes are done, and the connections wait in the accept queue with no
				// descriptor of the server's yet: the count rose by the client sockets alone.
				clientFDs := seen.AfterConnect - seen.Before
				Expect(clientFDs).To(Equal(len(clients)),
					"descriptors added by %d connect() calls", len(clients))
				Eventually(func() uint32 { return lab.AcceptQueue(l.FD()).Len }).
					WithTimeout(lab.AcceptWithin).Should(BeEquivalentTo(clientFDs),
					"the accept queue against the client sockets in /proc/self/fd")
				seen.QueuedBefore = lab.AcceptQueue(l.FD()).Len

				for range clientFDs {
					accepted = append(accepted, l.Accept())
				}
				// One new descriptor per accept4: N connections, N+1 descriptors on the
				// server's side, the listener's and one per connection...
				seen.AfterAccept = ch6Descriptors()
				Expect(seen.AfterAccept - seen.AfterConnect).To(Equal(clientFDs))
				// ...while the passive one, its queue now empty, is still listening.
				seen.QueuedAfter = lab.AcceptQueue(l.FD()).Len
				seen.ListenerState = lab.TCPState(l.FD())
				Expect(seen.QueuedAfter).To(BeZero())
				Expect(seen.ListenerState).To(Equal("LISTEN"))
				// --8<-- [end:passive-spawns-active-core]

				peers := map[netip.AddrPort]bool{}
				sockets = append(sockets, ch6Describe("listener", l.FD()))
				for _, a := range accepted {
					seen.Accepted = append(seen.Accepted, a.FD())
					t := a.Tuple()
					peers[t.Remote] = true
					tuples = append(tuples, evidence.TupleSeen{Conn: fmt.Sprintf("accept4 = %d", a.FD()),
						Server: t.String()})
					sockets = append(sockets, ch6Describe("accepted", a.FD()))
				}
				distinct := map[int]bool{l.FD(): true}
				for _, fd := range seen.Accepted {
					Expect(distinct).NotTo(HaveKey(fd),
						"accept4 returned descriptor %d twice, or the listener's", fd)
					distinct[fd] = true
				}
				// Each is an active socket of its own, each to a different client...
				Expect(peers).To(HaveLen(len(clients)))
				for _, c := range clients {
					Expect(peers).To(HaveKey(c.LocalAddr()))
				}
				for _, s := range sockets[1:] {
					Expect(s.State).To(Equal("ESTABLISHED"), "descriptor %d", s.FD)
					Expect(s.AcceptConn).To(BeZero(), "SO_ACCEPTCONN on descriptor %d", s.FD)
				}
				// ...and the passive one still is: it says so, and takes one more.
				Expect(sockets[0].State).To(Equal("LISTEN"))
				Expect(sockets[0].AcceptConn).To(Equal(1))
				next := lab.Dial(l.Addr)
				Expect(l.Accept().PeerAddr()).To(Equal(next.LocalAddr()),
					"a connection after the others")
				lab.Cite(evidence.Figures{
					"listener_fd": seen.Listener, "listener_state": seen.ListenerState,
					"before": seen.Before, "after_connect": seen.AfterConnect,
					"after_accept": seen.AfterAccept, "clients": clientFDs,
					"queued": seen.QueuedBefore, "queued_after": seen.QueuedAfter,
					"accepted": seen.Accepted,
				})
			})
		// --8<-- [end:passive-spawns-active]

		// --8<-- [start:passive-one-per-port]
		It("lets one local address and port have one listener, SO_REUSEADDR or not, over "+
			fam.String(), Label("claim:passive.one-per-port", fam.Name), func() {
			lab.RequireFamily(fam)
			var binds []evidence.BindSeen
			try := func(who string, s *lab.Sock, at netip.AddrPort, opts ...string) error {
				err := s.TryBind(at)
				binds = append(binds, evidence.BindSeen{Socket: who, Call: "bind",
					Addr: at.String(), Options: opts, Errno: sock.ErrnoName(err)})
				return err
			}
			listen := func(who string, s *lab.Sock, opts ...string) error {
				err := sock.Listen(s.FD(), 8)
				binds = append(binds, evidence.BindSeen{Socket: who, Call: "listen",
					Addr: s.LocalAddr().String(), Options: opts, Errno: sock.ErrnoName(err)})
				return err
			}
			defer func() { lab.Record(evidence.EntryBindAttempts, binds) }()
			reuse := "SO_REUSEADDR"

			// --8<-- [start:passive-one-per-port-core]
			// No options: the second bind(2) finds the port's owner in the bind hash
			// (inet_csk_get_port, inet_csk_bind_conflict) and fails.
			first := lab.Listen(fam.At(0), 8)
			binds = append(binds, evidence.BindSeen{Socket: "first listener", Call: "listen",
				Addr: first.Addr.String()})
			err := try("second socket", lab.TCPSocket(fam), first.Addr)
			Expect(errors.Is(err, unix.EADDRINUSE)).To(BeTrue(),
				"bind beside a listener: want EADDRINUSE, got %v", err)
			cited := evidence.Figures{"plain_errno": sock.ErrnoName(err)}

			// SO_REUSEADDR on both: it lets a socket share a port with ones that do not
			// listen (a TIME_WAIT, say), never with a listener.
			a := lab.TCPSocket(fam).ReuseAddr()
			Expect(try("listener A", a, fam.At(0), reuse)).To(Succeed())
			at := a.LocalAddr()
			Expect(listen("listener A", a, reuse)).To(Succeed())
			b := lab.TCPSocket(fam).ReuseAddr()
			err = try("socket B", b, at, reuse)
			Expect(errors.Is(err, unix.EADDRINUSE)).To(BeTrue(),
				"bind with SO_REUSEADDR on both, beside a listener: want EADDRINUSE, "+
					"got %v", err)
			cited["reuseaddr_errno"] = sock.ErrnoName(err)
			// --8<-- [end:passive-one-per-port-core]

			// Two SO_REUSEADDR sockets may both bind while neither listens; then the
			// first listen(2) wins, and the second fails: inet_csk_listen_start asks
			// inet_csk_get_port for the port again, now as a listener, so the rule is
			// about passive sockets, not about bind.
			c := lab.TCPSocket(fam).ReuseAddr()
			Expect(try("socket C", c, fam.At(0), reuse)).To(Succeed())
			shared := c.LocalAddr()
			d := lab.TCPSocket(fam).ReuseAddr()
			Expect(try("socket D", d, shared, reuse)).To(Succeed())
			Expect(d.LocalAddr()).To(Equal(shared),
				"getsockname on D: both bound to one address and port")
			Expect(listen("socket C", c, reuse)).To(Succeed())
			err = listen("socket D", d, reuse)
			Expect(errors.Is(err, unix.EADDRINUSE)).To(BeTrue(),
				"listen on a second socket bound to %s: want EADDRINUSE, got %v", shared, err)
			cited["both_bound"] = shared.String()
			cited["second_listen_errno"] = sock.ErrnoName(err)

			// The conflict was the listener: once A is closed, B's bind goes through.
			Expect(a.Close()).To(Succeed())
			Expect(try("socket B, after A's close", b, at, reuse)).To(Succeed())
			Expect(listen("socket B, after A's close", b, reuse)).To(Succeed())
			Expect(ch6AcceptConn(b.FD())).To(Equal(1), "SO_ACCEPTCONN on B")
			cited["after_close"] = b.LocalAddr().String()
			lab.Cite(cited)
		})
		// --8<-- [end:passive-one-per-port]

		// --8<-- [start:passive-reuseaddr-timewait]
		It("lets SO_REUSEADDR bind a port that a TIME_WAIT connection holds, when the old "+
			"listener set it too, over "+fam.String(),
			Label("claim:passive.one-per-port", fam.Name), func() {
				lab.RequireFamily(fam)
				var binds []evidence.BindSeen
				defer func() { lab.Record(evidence.EntryBindAttempts, binds) }()
				// bound records a bind(2) or listen(2) of a new socket on the old port.
				bound := func(call string, at netip.AddrPort, err error, opts ...string) {
					binds = append(binds, evidence.BindSeen{Socket: "new socket", Call: call,
						Addr: at.String(), Options: opts, Errno: sock.ErrnoName(err)})
				}
				reuse := []string{"SO_REUSEADDR"}
				cited := evidence.Figures{}
				for _, oldReuse := range []bool{true, false} {
					var opts []string
					old := lab.TCPSocket(fam)
					if oldReuse {
						old.ReuseAddr()
						opts = reuse
					}
					old.Bind(fam.At(0))
					l := old.Listen(8)
					binds = append(binds, evidence.BindSeen{Socket: "old listener", Call: "listen",
						Addr: l.Addr.String(), Options: opts})
					c := lab.Dial(l.Addr)
					a := l.Accept()
					client := c.LocalAddr()
					// The server closes first: its end sends FIN, and once the client's FIN
					// comes back it is TIME_WAIT (tcp_time_wait), a socket with no
					// descriptor that keeps the port for 60 s (TCP_TIMEWAIT_LEN,
					// include/net/tcp.h).
					Expect(a.Close()).To(Succeed())
					Eventually(func() string { return lab.TCPState(c.FD()) }).
						WithTimeout(lab.ReadWithin).
						Should(Equal("CLOSE_WAIT"), "the client, after the server's FIN")
					Expect(c.Close()).To(Succeed())
					var tw string
					Eventually(func() string {
						tw = ch6TimeWait(fam, l.Addr.Port(), client.Port())
						return tw
					}).WithTimeout(lab.ReadWithin).
						ShouldNot(BeEmpty(), "the server's end in TIME_WAIT in /proc/net/tcp")
					Expect(l.Close()).To(Succeed())
					binds = append(binds, evidence.BindSeen{
						Socket: "old listener, closed; its connection in TIME_WAIT",
						Call:   "close", Addr: l.Addr.String(), Options: opts})

					// --8<-- [start:passive-reuseaddr-timewait-core]
					// No listener and no descriptor holds the port now, only the TIME_WAIT: a
					// socket without SO_REUSEADDR is refused by it.
					err := lab.TCPSocket(fam).TryBind(l.Addr)
					bound("bind", l.Addr, err)
					Expect(errors.Is(err, unix.EADDRINUSE)).To(BeTrue(),
						"bind beside a TIME_WAIT, no SO_REUSEADDR: want EADDRINUSE, got %v", err)
					plainErrno := sock.ErrnoName(err)

					// With SO_REUSEADDR: inet_bind_conflict lets a socket by only when both
					// have sk_reuse and the other is not listening, and a TIME_WAIT has its
					// connection's flag, which the connection got from its listener.
					again := lab.TCPSocket(fam).ReuseAddr()
					err = again.TryBind(l.Addr)
					bound("bind", l.Addr, err, reuse...)
					if !oldReuse {
						Expect(errors.Is(err, unix.EADDRINUSE)).To(BeTrue(), "SO_REUSEADDR beside "+
							"the TIME_WAIT of a listener without it: want EADDRINUSE, got %v", err)
						cited["tw_old_without_errno"] = sock.ErrnoName(err)
						continue
					}
					Expect(err).NotTo(HaveOccurred(),
						"SO_REUSEADDR beside the TIME_WAIT of a listener with it")
					err = sock.Listen(again.FD(), 8)
					bound("listen", again.LocalAddr(), err, reuse...)
					Expect(err).NotTo(HaveOccurred())
					// --8<-- [end:passive-reuseaddr-timewait-core]
					cited["tw_connection"] = tw
					cited["tw_plain_errno"] = plainErrno
					cited["tw_relisten"] = again.LocalAddr().String()
				}
				lab.Cite(cited)
			})
		// --8<-- [end:passive-reuseaddr-timewait]

		// --8<-- [start:passive-shared-port]
		It("shares a port number between listeners on different local addresses, each taking its "+
			"own connections, over "+fam.String(), Label("claim:passive.shared-port", fam.Name),
			func() {
				lab.RequireFamily(fam)
				// IPv4: 127.0.0.1 and 127.0.0.2, both on lo (127.0.0.0/8 is local). IPv6:
				// ::1, and 127.0.0.1 in the other family.
				other := netip.MustParseAddr("127.0.0.2")
				if fam == lab.IPv6 {
					lab.RequireFamily(lab.IPv4)
					other = lab.IPv4.Loopback
				}
				var binds []evidence.BindSeen
				var one, two *lab.Listener
				// The kernel picks a port free on the first address; another program may
				// hold it on the second (bind to port 0 only checks this address), so a
				// few ports are tried. A kernel that never shared a port fails every try.
				for range 8 {
					one = lab.Listen(fam.At(0), 8)
					binds = append(binds, evidence.BindSeen{Socket: "first listener",
						Call: "listen", Addr: one.Addr.String()})
					s := lab.TCPSocket(lab.IPv4)
					at := netip.AddrPortFrom(other, one.Addr.Port())
					err := s.TryBind(at)
					binds = append(binds, evidence.BindSeen{Socket: "second listener", Call: "bind",
						Addr: at.String(), Errno: sock.ErrnoName(err)})
					if err == nil {
						two = s.Listen(8)
						break
					}
					Expect(errors.Is(err, unix.EADDRINUSE)).To(BeTrue(), "bind %s: %v", at, err)
					one.Close()
					s.Close()
				}
				lab.Record(evidence.EntryBindAttempts, binds)
				Expect(two).NotTo(BeNil(), "no port number could be shared by %s and %s in 8 tries",
					fam.Loopback, other)

				// --8<-- [start:passive-shared-port-core]
				// Both passive, on one port number (getsockname), two addresses.
				Expect(two.Addr.Port()).To(Equal(one.Addr.Port()))
				Expect(two.Addr.Addr()).NotTo(Equal(one.Addr.Addr()))
				Expect(ch6AcceptConn(one.FD())).To(Equal(1))
				Expect(ch6AcceptConn(two.FD())).To(Equal(1))

				// The kernel sends each connection to the listener of its destination
				// address: the other listener's accept queue stays empty.
				c1 := lab.Dial(one.Addr)
				a1 := one.Accept()
				otherQueue := lab.AcceptQueue(two.FD()).Len
				Expect(otherQueue).To(BeZero(),
					"the second listener's queue after a connection to the first")
				c2 := lab.Dial(two.Addr)
				a2 := two.Accept()
				Expect(lab.AcceptQueue(one.FD()).Len).To(BeZero(),
					"the first listener's queue after a connection to the second")
				// --8<-- [end:passive-shared-port-core]
				t1, t2 := a1.Tuple(), a2.Tuple()
				lab.Record(evidence.EntryTuples, []evidence.TupleSeen{
					{Conn: "to the first listener", Client: c1.Tuple().String(),
						Server: t1.String()},
					{Conn: "to the second listener", Client: c2.Tuple().String(),
						Server: t2.String()},
				})
				Expect(t1.Local).To(Equal(one.Addr))
				Expect(t2.Local).To(Equal(two.Addr))
				Expect(t1.Remote).To(Equal(c1.LocalAddr()))
				Expect(t2.Remote).To(Equal(c2.LocalAddr()))
				lab.Cite(evidence.Figures{
					"shared_first": one.Addr.String(), "shared_second": two.Addr.String(),
					"shared_first_accepted": t1.String(), "shared_second_accepted": t2.String(),
					"shared_other_queue": otherQueue,
				})
			})
		// --8<-- [end:passive-shared-port]

		// --8<-- [start:passive-shared-port-wildcard]
		It("refuses a wildcard listener beside a specific one on the same port, either way round, "+
			"in a sandbox, over "+fam.String(),
			Label("claim:passive.shared-port", fam.Name), func() {
				lab.RequireFamily(fam)
				// The wildcard listens on every address, the host's real interfaces too:
				// only inside a private network namespace.
				binds := lab.RunInSandbox(ch6WildcardChild, fam.Name, lab.SandboxOptions{})
				lab.Record(evidence.EntryBindAttempts, binds)

				Expect(binds).To(HaveLen(6))
				// The wildcard covers the specific address: bind(2) refuses it beside a
				// listener on loopback:P...
				Expect(binds[0].Errno).To(BeEmpty(), "%+v", binds[0])
				Expect(binds[1].Errno).To(Equal("EADDRINUSE"), "%+v", binds[1])
				Expect(binds[1].Call).To(Equal("bind"), "%+v", binds[1])
				// ...and refuses loopback:Q beside a wildcard listener on Q.
				Expect(binds[2].Errno).To(BeEmpty(), "%+v", binds[2])
				Expect(binds[3].Errno).To(Equal("EADDRINUSE"), "%+v", binds[3])
				Expect(binds[3].Call).To(Equal("bind"), "%+v", binds[3])
				// Once loopback:P's listener is closed, the wildcard binds P and listens.
				Expect(binds[4].Errno).To(BeEmpty(), "%+v", binds[4])
				Expect(binds[5].Errno).To(BeEmpty(), "%+v", binds[5])
				lab.Cite(evidence.Figures{
					"wildcard_specific": binds[0].Addr, "wildcard_refused": binds[1].Addr,
					"wildcard_errno": binds[1].Errno, "wildcard_listener": binds[2].Addr,
					"wildcard_specific_refused": binds[3].Addr,
					"wildcard_specific_errno":   binds[3].Errno,
					"wildcard_after_close":      binds[5].Addr,
				})
			})
		// --8<-- [end:passive-shared-port-wildcard]

		// --8<-- [start:passive-shared-port-reuseport]
		It("spreads connections over refserver's SO_REUSEPORT listeners on one address and port "+
			"by a hash of the 4-tuple, over "+fam.String(),
			Label("claim:passive.shared-port", fam.Name), func() {
				lab.RequireFamily(fam)
				const connections = 1000
				const probes = 8
				var spread evidence.ReusePortSpread
				var repeats []evidence.ReusePortRepeat
				defer func() {
					lab.Record(evidence.EntryReusePortRepeat, repeats)
					lab.Record(evidence.EntryReusePortSpread, spread)
				}()
				// refserver.New sets SO_REUSEADDR and SO_REUSEPORT on each of the four
				// sockets, binds them all to one address and port, and listens; no loop
				// runs until Serve, so every connection stays in the accept queue of the
				// listener the kernel chose for it.
				srv, err := refserver.New(refserver.Config{Addr: fam.At(0), ReusePort: true,
					Loops: 4, Backlog: 4096, Handler: refserver.Echo{}})
				Expect(err).NotTo(HaveOccurred())
				DeferCleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					srv.Shutdown(ctx)
				})
				listeners := srv.Listeners()
				spread.Addr = srv.Addr().String()
				for _, fd := range listeners {
					local, err := sock.LocalAddr(fd)
					Expect(err).NotTo(HaveOccurred())
					// The same address and port for the whole group, each socket passive,
					// each with SO_REUSEPORT as the kernel reads it back.
					Expect(local).To(Equal(srv.Addr()))
					Expect(ch6AcceptConn(fd)).To(Equal(1))
					rp, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT)
					Expect(err).NotTo(HaveOccurred())
					Expect(rp).To(Equal(1))
					// The queues must hold a share each, or a dropped SYN (1 s) would slow
					// this down: listen's backlog, cut to net.core.somaxconn.
					Expect(lab.AcceptQueue(fd).Max).To(BeNumerically(">=", connections/2),
						"accept queue limit of descriptor %d", fd)
				}
				Expect(len(listeners)).To(BeNumerically(">", 1))

				clients := make([]*lab.Sock, 0, connections)
				for range connections {
					clients = append(clients, lab.Dial(srv.Addr()))
				}
				// Every connect(2) the kernel completed, as TCP_INFO on the clients says.
				for _, c := range clients {
					if lab.TCPState(c.FD()) == "ESTABLISHED" {
						spread.Connected++
					}
				}
				// The last handshakes' ACKs may still be on their way to the server.
				Eventually(func() uint32 { return ch6QueueSum(listeners) }).
					WithTimeout(lab.AcceptWithin).Should(BeEquivalentTo(spread.Connected),
					"the listeners' accept queues against the clients connected")
				for _, fd := range listeners {
					q := lab.AcceptQueue(fd)
					local, _ := sock.LocalAddr(fd)
					spread.Listeners = append(spread.Listeners, evidence.ReusePortShare{
						FD: fd, Local: local.String(), Queued: q.Len, Max: q.Max})
				}

				// --8<-- [start:passive-shared-port-reuseport-core]
				// Every connection the kernel completed is in exactly one queue of the group,
				// and each listener got a share: at least a tenth, a quarter being even.
				var sum uint32
				for _, l := range spread.Listeners {
					sum += l.Queued
					Expect(l.Queued).To(BeNumerically(">=", spread.Connected/10),
						"listener %d of %+v", l.FD, spread.Listeners)
				}
				Expect(sum).To(BeEquivalentTo(spread.Connected))
				// The same 4-tuple lands on the same listener, whatever the queues hold: for
				// each SYN, inet_lookup_reuseport hashes the 4-tuple (inet_ehashfn, keyed once
				// per boot) and reuseport_select_sock scales the hash to the group's size.
				for range probes {
					// Two SO_REUSEADDR sockets bind one client port (allowed while neither
					// listens), so that no other program's connect() can take it between.
					s, again := lab.TCPSocket(fam).ReuseAddr(), lab.TCPSocket(fam).ReuseAddr()
					again.Bind(s.Bind(fam.At(0)))
					first := ch6QueuedOn(listeners, func() { s.Connect(srv.Addr()) })
					t := s.Tuple()
					ch6Reset(s) // RST: the 4-tuple leaves the established table, free again
					second := ch6QueuedOn(listeners, func() { again.Connect(srv.Addr()) })
					Expect(again.Tuple()).To(Equal(t))
					Expect(second).To(Equal(first),
						"the 4-tuple %s went to listener %d, then to %d", t, first, second)
					clients = append(clients, again)
					repeats = append(repeats,
						evidence.ReusePortRepeat{Tuple: t.String(), First: first, Second: second})
				}
				// --8<-- [end:passive-shared-port-reuseport-core]

				// Serve: each loop accepts from its own listener; every client is answered.
				served := make(chan error, 1)
				go func() { served <- srv.Serve() }()
				for _, c := range clients[:connections] {
					c.Send([]byte{'p'})
				}
				for _, c := range clients[:connections] {
					if string(c.Read(1)) == "p" {
						spread.Echoed++
					}
				}
				for _, c := range clients {
					Expect(c.Close()).To(Succeed())
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				Expect(srv.Shutdown(ctx)).To(Succeed(),
					"every client closed: nothing left to drain")
				Eventually(served).WithTimeout(5 * time.Second).Should(Receive(BeNil()))
				st := srv.Stats()
				spread.Accepted, spread.Closed = st.Accepted, st.Closed

				// Served: each echo byte came back, and refserver accepted what was queued,
				// the probes' reset connections included.
				Expect(spread.Echoed).To(Equal(spread.Connected))
				Expect(st.Accepted).To(BeNumerically(">=", uint64(sum)))
				Expect(st.Closed).To(Equal(st.Accepted))
				Expect(st.Open).To(BeZero())
				var queues []uint32
				for _, l := range spread.Listeners {
					queues = append(queues, l.Queued)
				}
				var landed []int
				for _, r := range repeats {
					landed = append(landed, r.First)
				}
				lab.Cite(evidence.Figures{
					"reuseport_addr": spread.Addr, "reuseport_listeners": len(spread.Listeners),
					"reuseport_connected": spread.Connected, "reuseport_queues": queues,
					"reuseport_probes": len(repeats), "reuseport_probe_listeners": landed,
					"reuseport_echoed": spread.Echoed, "reuseport_accepted": st.Accepted,
				})
			})
		// --8<-- [end:passive-shared-port-reuseport]

		// --8<-- [start:passive-reuseport-every-socket]
		It("lets listeners share one address and port only when every socket of them set "+
			"SO_REUSEPORT, over "+fam.String(),
			Label("claim:passive.shared-port", fam.Name), func() {
				lab.RequireFamily(fam)
				var binds []evidence.BindSeen
				defer func() { lab.Record(evidence.EntryBindAttempts, binds) }()
				rp := "SO_REUSEPORT"
				// listener binds and listens a socket, with SO_REUSEPORT when reusePort.
				listener := func(who string, at netip.AddrPort, reusePort bool) (*lab.Sock, error) {
					s := lab.TCPSocket(fam)
					var opts []string
					if reusePort {
						Expect(sock.SetReusePort(s.FD())).To(Succeed())
						opts = []string{rp}
					}
					err := s.TryBind(at)
					call := "bind"
					if err == nil {
						at = s.LocalAddr()
						call, err = "listen", sock.Listen(s.FD(), 8)
					}
					binds = append(binds, evidence.BindSeen{Socket: who, Call: call,
						Addr: at.String(), Options: opts, Errno: sock.ErrnoName(err)})
					return s, err
				}

				// A listener without the option, then a socket with it: inet_bind_conflict
				// wants sk_reuseport on both sockets, and refuses the bind.
				plain, err := listener("listener without SO_REUSEPORT", fam.At(0), false)
				Expect(err).NotTo(HaveOccurred())
				_, err = listener("socket with SO_REUSEPORT", plain.LocalAddr(), true)
				Expect(errors.Is(err, unix.EADDRINUSE)).To(BeTrue(),
					"SO_REUSEPORT beside a listener without it: want EADDRINUSE, got %v", err)
				Expect(binds[len(binds)-1].Call).To(Equal("bind"))
				cited := evidence.Figures{"every_second_only_errno": sock.ErrnoName(err)}

				// A listener with the option, then a socket without it: refused the same way.
				group, err := listener("listener with SO_REUSEPORT", fam.At(0), true)
				Expect(err).NotTo(HaveOccurred())
				at := group.LocalAddr()
				_, err = listener("socket without SO_REUSEPORT", at, false)
				Expect(errors.Is(err, unix.EADDRINUSE)).To(BeTrue(), "a socket without "+
					"SO_REUSEPORT beside a listener with it: want EADDRINUSE, got %v", err)
				Expect(binds[len(binds)-1].Call).To(Equal("bind"))
				cited["every_first_only_errno"] = sock.ErrnoName(err)

				// The control: with the option on both, the second binds and listens, and the
				// two are passive on one address and port.
				second, err := listener("second socket with SO_REUSEPORT", at, true)
				Expect(err).NotTo(HaveOccurred(), "SO_REUSEPORT on both sockets")
				Expect(second.LocalAddr()).To(Equal(at))
				Expect(ch6AcceptConn(group.FD())).To(Equal(1))
				Expect(ch6AcceptConn(second.FD())).To(Equal(1))
				cited["every_group"] = at.String()
				lab.Cite(cited)
			})
		// --8<-- [end:passive-reuseport-every-socket]

		// --8<-- [start:passive-reuseport-owner]
		It("refuses an SO_REUSEPORT socket of another owner beside a listener, in a sandbox, "+
			"over "+fam.String(),
			Label("claim:passive.shared-port", fam.Name), func() {
				lab.RequireFamily(fam)
				// The child changes its own filesystem UID to make a socket another user owns:
				// a process of its own, so that no thread of this one ever runs as someone else.
				seen := lab.RunInSandbox(ch6OwnerChild, fam.Name, lab.SandboxOptions{})
				lab.Record(evidence.EntryBindAttempts, seen.Binds)
				lab.Require(seen.Other == ch6OtherUID,
					fmt.Sprintf("a socket of another owner needs CAP_SETUID over uid %d (run "+
						"as root): setfsuid left the socket's owner at uid %d",
						ch6OtherUID, seen.Other))

				Expect(seen.Binds).To(HaveLen(3))
				// The owners as fstat(2) reads them: the socket's inode, whose uid the kernel
				// also keeps in the sock (sk_uid) and compares.
				Expect(seen.Other).NotTo(Equal(seen.First))
				Expect(seen.Same).To(Equal(seen.First))
				// Another owner's socket, SO_REUSEPORT and all, is refused at bind...
				Expect(seen.Binds[1].Call).To(Equal("bind"), "%+v", seen.Binds[1])
				Expect(seen.Binds[1].Errno).To(Equal("EADDRINUSE"), "%+v", seen.Binds[1])
				// ...and the same owner's joins the group.
				Expect(seen.Binds[2].Errno).To(BeEmpty(), "%+v", seen.Binds[2])
				Expect(seen.Binds[2].Call).To(Equal("listen"), "%+v", seen.Binds[2])
				lab.Cite(evidence.Figures{
					"owner_first": seen.First, "owner_other": seen.Other,
					"owner_errno": seen.Binds[1].Errno,
					"owner_same":  seen.Same, "owner_addr": seen.Binds[0].Addr,
				})
			})
		// --8<-- [end:passive-reuseport-owner]
	}
})

// --8<-- [start:passive-shared-port-child]

var ch6WildcardChild = lab.RegisterChild("ch6.passive.shared-port", ch6Wildcard)

// ch6Wildcard runs in a private network namespace, where a wildcard listener reaches
// nothing but the namespace's lo. It reports each bind and listen with the errno, or
// returns an error when a step that must work did not.
func ch6Wildcard(family string) ([]evidence.BindSeen, error) {
	loopback, wildcard := lab.IPv4.Loopback, netip.IPv4Unspecified()
	if family == lab.IPv6.Name {
		// net.ipv6.bindv6only is 0 in a new namespace: [::] also covers IPv4.
		loopback, wildcard = lab.IPv6.Loopback, netip.IPv6Unspecified()
	}
	var seen []evidence.BindSeen
	record := func(who, call string, at netip.AddrPort, err error) {
		seen = append(seen, evidence.BindSeen{Socket: who, Call: call, Addr: at.String(),
			Errno: sock.ErrnoName(err)})
	}
	// tryListen binds and listens on a new socket; it keeps the socket only on success. It
	// records the call that failed (bind or listen), or "listen" when both succeeded.
	tryListen := func(who string, at netip.AddrPort) (int, netip.AddrPort, error) {
		fd, got, err := lab.ListenOn(at, 8)
		call := "listen"
		if sys := (*os.SyscallError)(nil); errors.As(err, &sys) {
			call = sys.Syscall
		}
		if err == nil {
			at = got
		}
		record(who, call, at, err)
		return fd, at, err
	}

	specific, p, err := tryListen("listener on loopback", netip.AddrPortFrom(loopback, 0))
	if err != nil {
		return seen, err
	}
	// bind(2) to wildcard:P: inet_csk_bind_conflict finds loopback:P's listener, whose
	// address the wildcard includes.
	wildP := netip.AddrPortFrom(wildcard, p.Port())
	if fd, _, err := tryListen("wildcard, same port", wildP); err == nil {
		unix.Close(fd)
	}
	wild, q, err := tryListen("listener on the wildcard", netip.AddrPortFrom(wildcard, 0))
	if err != nil {
		return seen, err
	}
	defer unix.Close(wild)
	loopQ := netip.AddrPortFrom(loopback, q.Port())
	if fd, _, err := tryListen("loopback, same port", loopQ); err == nil {
		unix.Close(fd)
	}

	// The control: the wildcard was refused because of that one listener.
	if err := unix.Close(specific); err != nil {
		return seen, os.NewSyscallError("close", err)
	}
	fd, err := sock.Socket(sock.Family(p))
	if err != nil {
		return seen, err
	}
	defer unix.Close(fd)
	err = sock.Bind(fd, wildP)
	record("wildcard, after loopback's close", "bind", wildP, err)
	if err == nil {
		err = sock.Listen(fd, 8)
		record("wildcard, after loopback's close", "listen", wildP, err)
	}
	return seen, nil
}

// --8<-- [end:passive-shared-port-child]

// --8<-- [start:passive-reuseport-owner-child]

// ch6OtherUID is the other owner: nobody, on most systems.
const ch6OtherUID = 65534

// ch6OwnerSeen is what the owner child saw: three sockets' owners (fstat st_uid) and their
// bind and listen calls on one address and port.
type ch6OwnerSeen struct {
	First int                 `json:"first"` // the listener's owner
	Other int                 `json:"other"` // the socket made under setfsuid(ch6OtherUID)
	Same  int                 `json:"same"`  // a third socket, made as the listener was
	Binds []evidence.BindSeen `json:"binds"`
}

var ch6OwnerChild = lab.RegisterChild("ch6.passive.reuseport-owner", ch6Owner)

// ch6Owner runs in a process of its own (and a network namespace of its own). It opens an
// SO_REUSEPORT listener, then an SO_REUSEPORT socket owned by another user, and one owned
// by the listener's owner, each bound to the listener's address and port.
func ch6Owner(family string) (ch6OwnerSeen, error) {
	loopback := lab.IPv4.Loopback
	if family == lab.IPv6.Name {
		loopback = lab.IPv6.Loopback
	}
	var seen ch6OwnerSeen
	reusePortSocket := func() (int, int, error) {
		fd, err := sock.Socket(sock.Family(netip.AddrPortFrom(loopback, 0)))
		if err != nil {
			return -1, 0, err
		}
		if err := sock.SetReusePort(fd); err != nil {
			unix.Close(fd)
			return -1, 0, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, 0, os.NewSyscallError("fstat", err)
		}
		return fd, int(st.Uid), nil
	}
	// try binds fd to at and, when that works, listens.
	try := func(who string, fd int, at netip.AddrPort) (netip.AddrPort, error) {
		err := sock.Bind(fd, at)
		call := "bind"
		if err == nil {
			at, _ = sock.LocalAddr(fd)
			call, err = "listen", sock.Listen(fd, 8)
		}
		seen.Binds = append(seen.Binds, evidence.BindSeen{Socket: who, Call: call,
			Addr: at.String(), Options: []string{"SO_REUSEPORT"}, Errno: sock.ErrnoName(err)})
		return at, err
	}

	first, uid, err := reusePortSocket()
	if err != nil {
		return seen, err
	}
	defer unix.Close(first)
	seen.First = uid
	at, err := try(fmt.Sprintf("listener of uid %d", uid), first, netip.AddrPortFrom(loopback, 0))
	if err != nil {
		return seen, err
	}

	// socket(2) gives the socket's inode the creating thread's filesystem UID (sock_alloc),
	// which follows the effective one; setfsuid changes it for this thread alone, so the
	// socket is made on a thread locked to a goroutine that ends with it: the runtime then
	// retires the thread, and its credentials with it.
	type made struct {
		fd, uid int
		err     error
	}
	done := make(chan made, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes when the goroutine does
		prev, _ := unix.SetfsuidRetUid(ch6OtherUID)
		fd, uid, err := reusePortSocket()
		unix.SetfsuidRetUid(prev)
		done <- made{fd, uid, err}
	}()
	other := <-done
	if other.err != nil {
		return seen, other.err
	}
	defer unix.Close(other.fd)
	seen.Other = other.uid
	if other.uid != ch6OtherUID {
		return seen, nil // no CAP_SETUID here: the parent says so
	}
	// bind(2) runs with this process's own credentials, the listener owner's: what counts
	// is the socket's owner, which inet_bind_conflict compares (sk_uid) before it lets
	// SO_REUSEPORT share a port.
	try(fmt.Sprintf("socket of uid %d", other.uid), other.fd, at)

	same, uid, err := reusePortSocket()
	if err != nil {
		return seen, err
	}
	defer unix.Close(same)
	seen.Same = uid
	try(fmt.Sprintf("socket of uid %d", uid), same, at)
	return seen, nil
}

// --8<-- [end:passive-reuseport-owner-child]

// ch6Describe reads a socket's kind back from the kernel.
func ch6Describe(role string, fd int) evidence.SocketSeen {
	GinkgoHelper()
	s := evidence.SocketSeen{Role: role, FD: fd, State: lab.TCPState(fd),
		AcceptConn: ch6AcceptConn(fd)}
	local, err := sock.LocalAddr(fd)
	Expect(err).NotTo(HaveOccurred())
	s.Local = local.String()
	if peer, err := sock.PeerAddr(fd); err != nil {
		s.Peer = sock.ErrnoName(err)
	} else {
		s.Peer = peer.String()
	}
	return s
}

// ch6AcceptConn is getsockopt(SO_ACCEPTCONN): 1 when the socket is listening.
func ch6AcceptConn(fd int) int {
	GinkgoHelper()
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	Expect(os.NewSyscallError("getsockopt SO_ACCEPTCONN", err)).NotTo(HaveOccurred())
	return v
}

func ch6QueueSum(listeners []int) uint32 {
	GinkgoHelper()
	var sum uint32
	for _, fd := range listeners {
		sum += lab.AcceptQueue(fd).Len
	}
	return sum
}

func ch6Descriptors() int {
	GinkgoHelper()
	n, err := sock.OpenDescriptors()
	Expect(err).NotTo(HaveOccurred())
	return n
}

// ch6QueuedOn runs connect and returns the index of the one listener whose accept queue
// grew by the connection.
func ch6QueuedOn(listeners []int, connect func()) int {
	GinkgoHelper()
	before := make([]uint32, len(listeners))
	for i, fd := range listeners {
		before[i] = lab.AcceptQueue(fd).Len
	}
	var total uint32
	for _, n := range before {
		total += n
	}
	connect()
	Eventually(func() uint32 { return ch6QueueSum(listeners) }).WithTimeout(lab.AcceptWithin).
		Should(Equal(total+1), "the accept queues after one more connection")
	grew := -1
	for i, fd := range listeners {
		if lab.AcceptQueue(fd).Len == before[i]+1 {
			Expect(grew).To(Equal(-1), "two queues grew for one connection")
			grew = i
		}
	}
	Expect(grew).NotTo(Equal(-1))
	return grew
}

// ch6Reset closes a connected socket with SO_LINGER 0, so that it sends RST: that takes
// both ends out of the established table, and the same 4-tuple may connect again. The
// connection it reset stays in its listener's accept queue: each queue only grows.
func ch6Reset(s *lab.Sock) {
	GinkgoHelper()
	Expect(unix.SetsockoptLinger(s.FD(), unix.SOL_SOCKET, unix.SO_LINGER,
		&unix.Linger{Onoff: 1, Linger: 0})).To(Succeed())
	Expect(s.Close()).To(Succeed())
}

// ch6TimeWait finds the connection from local port to remote port among the TIME_WAIT
// sockets of /proc/net/tcp (tcp6 for IPv6): a TIME_WAIT has no descriptor to ask with
// getsockopt, and the kernel lists it there with state 06 (tcp4_seq_show, get_timewait4_sock).
// It returns the connection as "local -> remote", the kernel's hexadecimal turned back into
// addresses, or "" when there is none.
func ch6TimeWait(fam lab.Family, local, remote uint16) string {
	GinkgoHelper()
	file := "/proc/thread-self/net/tcp"
	if fam.Domain == unix.AF_INET6 {
		file += "6"
	}
	b, err := os.ReadFile(file)
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "06" {
			continue
		}
		l, lerr := ch6ProcAddr(f[1])
		r, rerr := ch6ProcAddr(f[2])
		if lerr == nil && rerr == nil && l.Port() == local && r.Port() == remote {
			return fmt.Sprintf("%s -> %s", l, r)
		}
	}
	return ""
}

// ch6ProcAddr reads an address of /proc/net/tcp: the address as the kernel holds it, printed
// as 32-bit words in hexadecimal in the machine's byte order, then ":" and the port in
// hexadecimal.
func ch6ProcAddr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if !ok || err != nil || len(hexAddr)%8 != 0 {
		return netip.AddrPort{}, fmt.Errorf("not an address of /proc/net/tcp: %q", s)
	}
	raw := make([]byte, 0, len(hexAddr)/2)
	for i := 0; i < len(hexAddr); i += 8 {
		w, err := strconv.ParseUint(hexAddr[i:i+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("not an address of /proc/net/tcp: %q", s)
		}
		raw = binary.NativeEndian.AppendUint32(raw, uint32(w))
	}
	addr, ok := netip.AddrFromSlice(raw)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("not an address of /proc/net/tcp: %q", s)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
