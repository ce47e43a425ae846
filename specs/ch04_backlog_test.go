//go:build linux

package specs

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"portproof/refserver"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// The evidence this chapter attaches (lab.Record) is evidence.EntryBacklog*, whose types
// specs/evidence/backlog.go holds: the docs draw chapter 4's pictures from the same types.

// ch4UserTimeout ends a connect() that nobody answers: with TCP_USER_TIMEOUT below the
// initial RTO (1 s), the retransmission timer's first expiry resends the SYN and re-arms the
// timer for what is left of the user timeout, nothing (tcp_clamp_rto_to_user_timeout); at
// that next tick tcp_write_timeout ends the attempt with ETIMEDOUT.
const ch4UserTimeout = 500 * time.Millisecond

// ch4SandboxSomaxconn is net.core.somaxconn in the sandbox of the backlog.size proof: small,
// so the capped queue is filled in a moment.
const ch4SandboxSomaxconn = 8

// ch4RaisedSomaxconn is net.core.somaxconn where refserver's own backlog is read: far above
// SOMAXCONN, so that it caps nothing refserver asks by default.
const ch4RaisedSomaxconn = 1 << 20

// ch4OpenClients is how many connections the backlog-1 server is made to hold at once.
const ch4OpenClients = 1000

var _ = Describe(Backlog.Title, Label("chapter:4"), func() {
	for _, fam := range lab.Families() {
		// --8<-- [start:backlog-queue]
		It("completes connect() for clients the server never accepts, and queues them, "+
			"over "+fam.String(),
			Label("claim:backlog.queue", fam.Name), func() {
				lab.RequireFamily(fam)
				const backlog, clients = 8, 3
				l := lab.Listen(fam.At(0), backlog)
				q := lab.AcceptQueue(l.FD())
				seen := evidence.QueueSeen{Listener: l.Addr.String(), Backlog: backlog,
					Somaxconn: lab.SysctlInt("net.core.somaxconn"), Max: q.Max, Lens: []uint32{q.Len}}
				Expect(q.Len).To(BeZero(), "a new listener's queue")

				var socks []*lab.Sock
				var states []evidence.ClientState
				established := 0
				for range clients {
					// connect(2) returns as soon as the client has the SYN-ACK and sends its
					// ACK: the listener's kernel answered the SYN, and no accept() was called.
					// That ACK, crossing lo, puts the connection in the queue.
					c := lab.Dial(l.Addr)
					socks = append(socks, c)
					st := ch4State(c)
					states = append(states, st)
					if st.State == "ESTABLISHED" {
						established++
					}
					q = ch4AwaitQueueLen(l.FD(), uint32(established))
					seen.Lens = append(seen.Lens, q.Len)
				}

				// One accept() takes the oldest connection off the queue (FIFO), and the
				// queue shrinks by one.
				a := l.Accept()
				seen.Accepted = a.PeerAddr().String()
				seen.AfterAccept = lab.AcceptQueue(l.FD()).Len
				lab.Record(evidence.EntryBacklogQueue, seen)
				lab.Record(evidence.EntryBacklogStates, states)
				lab.Cite(evidence.Figures{"lens": seen.Lens, "limit": q.Max, "established": established,
					"accepted": seen.Accepted, "after_accept": seen.AfterAccept})

				// --8<-- [start:backlog-queue-core]
				for _, st := range states {
					Expect(st.State).To(Equal("ESTABLISHED"), "client %s", st.Client)
				}
				// tcpi_unacked, on a listener the accept queue's length, is every client
				// whose kernel says ESTABLISHED: they wait in the queue.
				Expect(q.Len).To(BeEquivalentTo(established),
					"the queue's length after %d clients, before any accept()", clients)
				// tcpi_sacked is the queue's limit: the backlog asked, under somaxconn.
				Expect(q.Max).To(BeEquivalentTo(min(backlog, seen.Somaxconn)),
					"the queue's limit for listen(fd, %d) under net.core.somaxconn %d",
					backlog, seen.Somaxconn)
				Expect(a.PeerAddr()).To(Equal(socks[0].LocalAddr()),
					"accept() returns the first connection queued")
				Expect(seen.AfterAccept).To(Equal(q.Len-1), "the queue's length after one accept()")
				// --8<-- [end:backlog-queue-core]
			})
		// --8<-- [end:backlog-queue]

		// --8<-- [start:backlog-size]
		It("queues backlog+1 connections, one for listen(fd, 0), and leaves the next client "+
			"in SYN_SENT, over "+fam.String(),
			Label("claim:backlog.size", fam.Name), func() {
				lab.RequireFamily(fam)
				type doomed struct {
					sock    *lab.Sock
					l       *lab.Listener
					pending *ch4Pending
				}
				var fills []evidence.Fill
				var next []doomed
				for _, backlog := range []int{0, 1, 2} {
					l := lab.Listen(fam.At(0), backlog)
					q := lab.AcceptQueue(l.FD())
					fill := evidence.Fill{Listener: l.Addr.String(), Backlog: backlog, Max: q.Max}
					// As many clients as the kernel's own limit plus one, each once the last
					// is queued: every connect() must complete.
					for range q.Max + 1 {
						c := lab.Dial(l.Addr)
						fill.Completed = append(fill.Completed, ch4State(c))
						q = ch4AwaitQueueLen(l.FD(), uint32(len(fill.Completed)))
					}
					fill.Queued = q.Len
					fills = append(fills, fill)

					// The next one's SYN finds sk_acceptq_is_full (sk_ack_backlog >
					// sk_max_ack_backlog) and is dropped. TCP_USER_TIMEOUT has its kernel
					// give up at the first retransmission timeout, not after tcp_syn_retries
					// tries.
					c := lab.TCPSocket(fam)
					ms := int(ch4UserTimeout.Milliseconds())
					Expect(unix.SetsockoptInt(c.FD(), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)).
						To(Succeed())
					fills[len(fills)-1].Next.UserTimeoutMS, _ =
						unix.GetsockoptInt(c.FD(), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
					pending := ch4ConnectInBackground(c.FD(), l.Addr, lab.ConnectWithin)
					next = append(next, doomed{sock: c, l: l, pending: pending})
				}
				// The three doomed clients wait out their one timer together.
				for i, d := range next {
					n := &fills[i].Next
					Eventually(func() string { return ch4State(d.sock).State }).
						WithTimeout(lab.ConnectWithin).WithPolling(time.Millisecond).
						ShouldNot(Equal("CLOSE"), "connect() has begun")
					st := ch4State(d.sock)
					n.Client, n.State = st.Client, st.State
					n.Queued = lab.AcceptQueue(d.l.FD()).Len
				}
				for i, d := range next {
					n := &fills[i].Next
					d.pending.wait()
					n.Errno = sock.ErrnoName(d.pending.err)
					n.AfterUS = d.pending.took.Microseconds()
					n.StateAfter = ch4State(d.sock).State
					ti, err := unix.GetsockoptTCPInfo(d.sock.FD(), unix.IPPROTO_TCP, unix.TCP_INFO)
					if err == nil {
						n.Retransmits = ti.Total_retrans
					}
				}
				lab.Record(evidence.EntryBacklogFill, fills)
				var limits, queued, resent []uint32
				var gaveUp []float64
				for _, f := range fills {
					limits, queued = append(limits, f.Max), append(queued, f.Queued)
					resent = append(resent, f.Next.Retransmits)
					gaveUp = append(gaveUp, float64(f.Next.AfterUS)/1e6)
				}
				lab.Cite(evidence.Figures{"limits": limits, "queued": queued,
					"user_timeout_ms": fills[0].Next.UserTimeoutMS,
					"gave_up_s":       gaveUp, "resent": resent})

				// --8<-- [start:backlog-size-core]
				for _, f := range fills {
					at := fmt.Sprintf("listen(fd, %d)", f.Backlog)
					// tcpi_sacked is the backlog as asked: all are below somaxconn.
					Expect(f.Max).To(BeEquivalentTo(f.Backlog), at)
					for _, c := range f.Completed {
						Expect(c.State).To(Equal("ESTABLISHED"), "%s: client %s", at, c.Client)
					}
					// The queue holds one more than its limit: the kernel calls it full only
					// when it holds more than sk_max_ack_backlog. listen(fd, 0) queues one.
					Expect(f.Queued).To(Equal(f.Max+1), at)
					Expect(f.Completed).To(HaveLen(int(f.Queued)),
						"%s: clients whose connect() completed", at)
					// The next client: its SYN went out and nothing came back.
					Expect(f.Next.State).To(Equal("SYN_SENT"),
						"%s: the next client, %s, while the queue was full", at, f.Next.Client)
					Expect(f.Next.Queued).To(Equal(f.Queued),
						"%s: the queue while the next client waits", at)
					// Not ECONNREFUSED, which an RST would have given at once: the kernel's
					// TCP_USER_TIMEOUT gave up on a SYN that was never answered, and left the
					// socket CLOSE (Connect's own deadline would have left it SYN_SENT).
					Expect(f.Next.Errno).To(Equal("ETIMEDOUT"), "%s: the next client's connect()", at)
					Expect(f.Next.StateAfter).To(Equal("CLOSE"),
						"%s: the next client, after ETIMEDOUT", at)
				}
				// --8<-- [end:backlog-size-core]
			})
		// --8<-- [end:backlog-size]

		// --8<-- [start:backlog-size-somaxconn]
		It("caps a larger backlog at net.core.somaxconn, SOMAXCONN in a new namespace, "+
			"not the article's 5-10, over "+fam.String(),
			Label("claim:backlog.size", fam.Name), func() {
				lab.RequireFamily(fam)
				// listen(2)'s backlog is an int; any value above net.core.somaxconn is cut to
				// it without an error (__sys_listen).
				const backlog = math.MaxInt32

				// The host's setting is read, never written.
				host := evidence.BacklogCap{Where: "host", Somaxconn: lab.SysctlInt("net.core.somaxconn"),
					Backlog: backlog, Article: ch4Article}
				l := lab.Listen(fam.At(0), backlog)
				q := lab.AcceptQueue(l.FD())
				host.Max = q.Max
				lab.Record(evidence.EntryBacklogCap, host)

				// A new network namespace has the kernel's own default, whatever the host set:
				// net.core.somaxconn is SOMAXCONN there (preinit_net_sysctl).
				fresh := lab.RunInSandbox(ch4CapChild,
					ch4SizeArg{Loopback: fam.Loopback.String(), Backlog: backlog},
					lab.SandboxOptions{Timeout: 15 * time.Second},
					"listen(fd, %d) in a new namespace", backlog)
				lab.Record(evidence.EntryBacklogCap, fresh)

				// In a sandbox of its own, net.core.somaxconn is lowered: a listen(fd, 100)
				// is capped to it, and its queue takes exactly that many plus one.
				small := lab.RunInSandbox(ch4SizeChild,
					ch4SizeArg{Loopback: fam.Loopback.String(), Backlog: 100},
					lab.SandboxOptions{Timeout: 15 * time.Second, Sysctls: map[string]string{
						"net.core.somaxconn": strconv.Itoa(ch4SandboxSomaxconn)}},
					"listen(fd, 100) in a sandbox with net.core.somaxconn %d", ch4SandboxSomaxconn)
				lab.Record(evidence.EntryBacklogCap, small)
				f := small.Fill
				lab.Cite(evidence.Figures{
					"asked": backlog, "host_somaxconn": host.Somaxconn, "host_max": host.Max,
					"default_somaxconn": fresh.Somaxconn, "default_max": fresh.Max,
					"small_somaxconn": small.Somaxconn, "small_asked": small.Backlog,
					"small_max": small.Max, "small_queued": f.Queued,
					"small_overflows_rise": small.Counters.Delta["ListenOverflows"],
					"small_drops_rise":     small.Counters.Delta["ListenDrops"]})

				// --8<-- [start:backlog-size-somaxconn-core]
				Expect(host.Max).To(BeEquivalentTo(host.Somaxconn),
					"the host: listen(fd, %d) under net.core.somaxconn %d", backlog, host.Somaxconn)
				Expect(q.Len).To(BeZero(), "the host: a new listener's queue")
				Expect(fresh.Max).To(BeEquivalentTo(fresh.Somaxconn), "a new namespace: "+
					"listen(fd, %d) under its default net.core.somaxconn %d", backlog, fresh.Somaxconn)
				Expect(small.Max).To(BeEquivalentTo(small.Somaxconn), "the sandbox: "+
					"listen(fd, %d) under net.core.somaxconn %d", small.Backlog, small.Somaxconn)
				Expect(small.Max).To(BeNumerically("<", small.Backlog),
					"the sandbox: the limit against the backlog asked")
				for _, c := range f.Completed {
					Expect(c.State).To(Equal("ESTABLISHED"),
						"the sandbox: client %s, one of the %d+1 the queue takes", c.Client, small.Max)
				}
				Expect(f.Queued).To(Equal(small.Max+1),
					"the sandbox: the queue's length once %d clients had connected", len(f.Completed))
				Expect(f.Completed).To(HaveLen(int(f.Queued)),
					"the sandbox: clients whose connect() completed")
				// The next SYN was dropped, and counted as an overflow: the client waits.
				Expect(f.Next.State).To(Equal("SYN_SENT"), "the sandbox: the client after the "+
					"queue was full, %s, once its SYN was counted as an overflow", f.Next.Client)
				Expect(f.Next.Queued).To(Equal(f.Queued),
					"the sandbox: the queue's length while that client waited")
				Expect(small.Counters.Delta["ListenOverflows"]).To(BeNumerically(">=", 1),
					"the sandbox: TcpExt ListenOverflows after that client's SYN")
				// --8<-- [end:backlog-size-somaxconn-core]
			})
		// --8<-- [end:backlog-size-somaxconn]

		// --8<-- [start:backlog-refserver-default]
		It("has refserver ask for SOMAXCONN, the kernel's default cap, unless told otherwise, "+
			"over "+fam.String(),
			Label("claim:backlog.size", fam.Name), func() {
				lab.RequireFamily(fam)
				// The kernel's SOMAXCONN, as a new namespace's net.core.somaxconn shows it.
				fresh := lab.RunInSandbox(ch4CapChild,
					ch4SizeArg{Loopback: fam.Loopback.String(), Backlog: math.MaxInt32},
					lab.SandboxOptions{Timeout: 15 * time.Second},
					"listen(fd, %d) in a new namespace", math.MaxInt32)
				lab.Record(evidence.EntryBacklogCap, fresh)
				// --8<-- [start:backlog-refserver-default-core]
				// refserver with Config.Backlog 0, where net.core.somaxconn caps nothing it
				// could ask: its listener's limit is its own backlog.
				raised := lab.RunInSandbox(ch4RefserverChild, fam.Loopback.String(),
					lab.SandboxOptions{Timeout: 15 * time.Second, Sysctls: map[string]string{
						"net.core.somaxconn": strconv.Itoa(ch4RaisedSomaxconn)}},
					"refserver.New in a sandbox with net.core.somaxconn %d", ch4RaisedSomaxconn)
				lab.Record(evidence.EntryBacklogCap, raised)
				lab.Cite(evidence.Figures{"refserver_max": raised.Max, "raised_somaxconn": raised.Somaxconn,
					"new_namespace_somaxconn": fresh.Somaxconn})

				Expect(raised.Max).To(BeNumerically("<", raised.Somaxconn),
					"refserver's listener under net.core.somaxconn %d: not capped", raised.Somaxconn)
				Expect(raised.Max).To(BeEquivalentTo(fresh.Somaxconn),
					"refserver's default backlog, against a new namespace's net.core.somaxconn")
				// --8<-- [end:backlog-refserver-default-core]
			})
		// --8<-- [end:backlog-refserver-default]

		// --8<-- [start:backlog-full]
		It("drops a SYN to a full queue without a word, and completes the connection once the "+
			"SYN is sent again, over "+fam.String(),
			Label("claim:backlog.full", fam.Name), func() {
				lab.RequireFamily(fam)
				seen := lab.RunInSandbox(ch4FullChild, fam.Loopback.String(), lab.SandboxOptions{
					// Set to show that even then the kernel answers a dropped SYN with nothing.
					Sysctls: map[string]string{"net.ipv4.tcp_abort_on_overflow": "1"},
					Timeout: 15 * time.Second,
				}, "the sandbox: a filler, then a client meeting the full queue")
				o := &seen.Overflow
				packets, syns := ch4Timeline(seen.BeforeAccept, seen.AfterAccept, o)
				// The resent SYN, and the SYN-ACK and ACK that answered it, on lo's clock.
				var resent, synAck, ack = -1, -1, -1
				if len(syns) == 2 {
					resent = syns[1]
					o.SynGapUS = packets[resent].AtUS - packets[syns[0]].AtUS
					synAck = ch4NextPacket(packets, resent, o.Listener, o.Client, "SYN,ACK")
					ack = ch4NextPacket(packets, max(synAck, resent), o.Client, o.Listener, "ACK")
				}
				lab.Record(evidence.EntryBacklogOverflow, *o)
				lab.Record(evidence.EntryBacklogCounters, seen.Counters)
				lab.Record(evidence.EntryBacklogPackets, packets)
				rise := seen.Counters.Delta
				figures := evidence.Figures{"abort_on_overflow": o.AbortOnOverflow,
					"queue_len": o.QueueLen, "queue_limit": o.QueueMax,
					"overflows_rise": rise["ListenOverflows"], "drops_rise": rise["ListenDrops"],
					"rto_ms": float64(o.RTOUS) / 1e3, "accept_ms": float64(o.AcceptAtUS) / 1e3,
					"resent_after_ms": float64(o.SynGapUS) / 1e3,
					"connect_ms":      float64(o.EstablishedUS) / 1e3,
					"retransmits":     o.Retransmits}
				if synAck > resent && ack > synAck {
					figures["synack_us"] = packets[synAck].AtUS - packets[resent].AtUS
					figures["ack_us"] = packets[ack].AtUS - packets[resent].AtUS
				}
				lab.Cite(figures)

				Expect(o.AbortOnOverflow).To(Equal("1"),
					"net.ipv4.tcp_abort_on_overflow, read back in the sandbox")
				Expect(o.QueueLen).To(Equal(o.QueueMax+1),
					"the filler's connection fills a listen(fd, 0) queue")
				// --8<-- [start:backlog-full-core]
				// The SYN was dropped: both counters moved in a namespace where nothing else
				// runs, and the client was left waiting, not refused.
				Expect(rise["ListenOverflows"]).To(BeNumerically(">=", 1),
					"TcpExt ListenOverflows once the client's SYN met the full queue")
				Expect(rise["ListenDrops"]).To(BeNumerically(">=", 1),
					"TcpExt ListenDrops once the client's SYN met the full queue")
				Expect(o.StateFull).To(Equal("SYN_SENT"),
					"the client %s once its SYN was dropped, before the server's accept()", o.Client)
				// On the wire: before accept(), the client's SYN and no answer; after, a SYN
				// again from the same client port, SYN-ACK and ACK; no RST anywhere.
				for _, p := range packets {
					Expect(p.Flags).NotTo(ContainSubstring("RST"), "%+v", p)
				}
				Expect(ch4ClientFlags(packets, "before accept", o.Client)).To(Equal([]string{"SYN"}),
					"the client's segments on lo before the server's accept()")
				Expect(ch4ClientFlags(packets, "after accept", o.Client)).
					To(Equal([]string{"SYN", "SYN,ACK", "ACK"}),
						"the client's segments on lo after the server's accept()")
				// And lo's own timestamps put the second SYN a retransmission timeout after the
				// first: the retransmission timer sent it, not the accept().
				Expect(syns).To(HaveLen(2), "the client's SYNs on the wire")
				Expect(o.SynGapUS).To(BeNumerically(">=", int64(o.RTOUS)*9/10),
					"the SYN sent again, against tcpi_rto %d µs", o.RTOUS)
				// --8<-- [end:backlog-full-core]
				// accept() made room, and told the client nothing.
				Expect(o.AcceptedFirst).To(Equal(o.Filler), "the server's first accept()")
				Expect(o.StateAccepted).To(Equal("SYN_SENT"), "the client %s right after the "+
					"filler was accepted, before its SYN was resent", o.Client)
				// Then connect() completed, and the next accept() returned this client.
				Expect(o.ConnectErr).To(BeEmpty(), "the client's connect(), once its SYN was resent")
				Expect(o.StateAfter).To(Equal("ESTABLISHED"),
					"the client %s once connect() returned", o.Client)
				Expect(o.AcceptedSecond).To(Equal(o.Client), "the server's second accept()")
				// It took a retransmission, which the client's kernel counted, and so the
				// retransmission timer: the client's own tcpi_rto (1 s, TCP_TIMEOUT_INIT, for
				// a SYN with no RTT measured). Kernel timers fire late, never early; a tenth
				// off covers the timer wheel's rounding.
				Expect(o.Retransmits).To(BeNumerically(">=", 1),
					"the client's tcpi_total_retrans once connect() returned")
				Expect(o.RTOUS).To(BeNumerically(">", 0),
					"the client's tcpi_rto while its SYN was unanswered")
				Expect(o.EstablishedUS).To(BeNumerically(">=", int64(o.RTOUS)*9/10),
					"connect()'s time, against tcpi_rto %d µs", o.RTOUS)
				Expect(o.EstablishedUS).To(BeNumerically(">", o.AcceptAtUS),
					"connect()'s time, against the server's accept() of the filler")
			})
		// --8<-- [end:backlog-full]

		// --8<-- [start:backlog-open-vs-pending]
		It("holds a thousand open connections through refserver's listener with backlog 1, "+
			"over "+fam.String(),
			Label("claim:backlog.open-vs-pending", fam.Name), func() {
				lab.RequireFamily(fam)
				const backlog = 1
				srv, err := refserver.New(refserver.Config{
					Addr: fam.At(0), Backlog: backlog, Handler: refserver.Echo{}})
				Expect(err).NotTo(HaveOccurred(), "refserver.New with Config.Backlog %d", backlog)
				served := make(chan error, 1)
				go func() { served <- srv.Serve() }()
				DeferCleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					srv.Shutdown(ctx) // at once when the spec already shut it down
				})
				lfd := srv.Listeners()[0]
				seen := evidence.OpenConnections{Listener: srv.Addr().String(), Backlog: backlog}
				seen.DescriptorsBefore, err = sock.OpenDescriptors()
				Expect(err).NotTo(HaveOccurred(), "the descriptors open before the first client")

				start := time.Now()
				clients := make([]*lab.Sock, 0, ch4OpenClients)
				for i := range ch4OpenClients {
					c := lab.Dial(srv.Addr())
					clients = append(clients, c)
					// The byte comes back only if a loop accepted the connection, registered
					// it with epoll and served it.
					c.Send([]byte{byte(i)})
					if got := c.Read(1); got[0] == byte(i) {
						seen.Echoed++
					}
				}
				seen.ConnectUS = time.Since(start).Microseconds()
				for _, c := range clients {
					if ch4State(c).State == "ESTABLISHED" {
						seen.Established++
					}
				}
				q := lab.AcceptQueue(lfd)
				seen.QueueMax, seen.QueueLen = q.Max, q.Len
				seen.DescriptorsAfter, err = sock.OpenDescriptors()
				Expect(err).NotTo(HaveOccurred(), "the descriptors open with every client connected")
				opened := seen.DescriptorsAfter - seen.DescriptorsBefore
				seen.PerConnection = float64(opened) / float64(seen.Established)
				st := srv.Stats()
				seen.ServerOpen, seen.ServerAccepted = st.Open, st.Accepted
				lab.Record(evidence.EntryBacklogOpen, seen)
				lab.Cite(evidence.Figures{"open": seen.Established, "echoed": seen.Echoed,
					"queue_limit": q.Max, "queue_len": q.Len,
					"descriptors_before": seen.DescriptorsBefore,
					"descriptors_after":  seen.DescriptorsAfter,
					"per_connection":     seen.PerConnection, "server_open": seen.ServerOpen})

				// --8<-- [start:backlog-open-vs-pending-core]
				// The kernel's limit on the listener is 1 pending connection, and with every
				// client open none is pending (tcpi_unacked)...
				Expect(q.Max).To(BeEquivalentTo(backlog),
					"the limit of refserver's listener, Config.Backlog %d", backlog)
				Expect(q.Len).To(BeZero(), "the accept queue with %d connections open", seen.Established)
				// ...while every client is open and was served: far more than the queue holds.
				Expect(seen.Established).To(Equal(len(clients)),
					"clients in ESTABLISHED, all connected at once")
				Expect(seen.Echoed).To(Equal(seen.Established), "clients whose byte refserver echoed")
				Expect(seen.Established).To(BeNumerically(">", 100*int(q.Max+1)),
					"open connections against the queue's backlog+1")
				// What each open connection costs is descriptors: the client's and the one
				// accept4 returned, 2 per connection, give or take what else the process opened.
				Expect(opened).To(BeNumerically("~", 2*seen.Established, 10),
					"descriptors opened with %d connections (from %d to %d)",
					seen.Established, seen.DescriptorsBefore, seen.DescriptorsAfter)
				// --8<-- [end:backlog-open-vs-pending-core]

				// The clients leave first; refserver then ends each connection with FIN and
				// Shutdown returns once all are closed, long before its deadline.
				for _, c := range clients {
					Expect(c.Close()).To(Succeed())
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				Expect(srv.Shutdown(ctx)).To(Succeed())
				Eventually(served).WithTimeout(5 * time.Second).Should(Receive(BeNil()))
			})
		// --8<-- [end:backlog-open-vs-pending]
	}
})

// ch4AwaitQueueLen is ch4AwaitQueue within lab.AcceptWithin, which must read the queue.
func ch4AwaitQueueLen(l int, want uint32) sock.AcceptQueue {
	GinkgoHelper()
	q, err := ch4AwaitQueue(l, want, lab.AcceptWithin)
	Expect(err).NotTo(HaveOccurred())
	return q
}

// ch4State is a client's address and TCP state, which must be readable.
func ch4State(c *lab.Sock) evidence.ClientState {
	GinkgoHelper()
	s, err := ch4StateOf(c.FD())
	Expect(err).NotTo(HaveOccurred())
	return s
}

// ch4Timeline puts the segments captured before and after accept() on one timeline from the
// first, names who sent each, and returns the indexes of the client's SYNs in it.
func ch4Timeline(before, after []evidence.Segment, o *evidence.Overflow) ([]evidence.OverflowPacket, []int) {
	var packets []evidence.OverflowPacket
	var syns []int
	for i, s := range append(append([]evidence.Segment(nil), before...), after...) {
		phase := "before accept"
		if i >= len(before) {
			phase = "after accept"
		}
		from := "server"
		switch s.Src.String() {
		case o.Filler:
			from = "filler"
		case o.Client:
			from = "client"
			if s.Flags == "SYN" {
				syns = append(syns, len(packets))
			}
		}
		packets = append(packets, evidence.OverflowPacket{AtUS: s.Time.Sub(before[0].Time).Microseconds(), Phase: phase, From: from,
			Src: s.Src.String(), Dst: s.Dst.String(), Flags: s.Flags, Seq: s.Seq, Ack: s.Ack, Len: s.Len})
	}
	return packets, syns
}

// ch4NextPacket is the index of the first packet after packets[i] from src to dst with these
// flags, or -1.
func ch4NextPacket(packets []evidence.OverflowPacket, i int, src, dst, flags string) int {
	for j := i + 1; j < len(packets); j++ {
		if p := packets[j]; p.Src == src && p.Dst == dst && p.Flags == flags {
			return j
		}
	}
	return -1
}

// ch4ClientFlags lists the flags of the segments from or to client in one phase.
func ch4ClientFlags(packets []evidence.OverflowPacket, phase, client string) []string {
	var flags []string
	for _, p := range packets {
		if p.Phase == phase && (p.Src == client || p.Dst == client) {
			flags = append(flags, p.Flags)
		}
	}
	return flags
}
