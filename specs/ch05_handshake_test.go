//go:build linux

package specs

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	"golang.org/x/sys/unix"

	"portproof/refserver"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// The evidence this chapter attaches (lab.Record), beside evidence.EntryErrno and
// evidence.EntryPorts, is the names and types of specs/evidence/handshake.go, from which the
// docs draw chapter 5's pictures; and ch5ServerSeen, below.

// ch5ServerSeen is the value of evidence.EntryRefserverStats: refserver's own Stats, which
// the evidence package, of the standard library alone, does not import. No picture reads
// it; the proof page shows it by its shape.
type ch5ServerSeen struct {
	Serving refserver.Stats `json:"serving"` // right after the CPU window
	Stopped refserver.Stats `json:"stopped"` // once Serve had returned
	Log     []string        `json:"log"`     // what it logged, line by line: its "shed" lines
}

// ch5TimelineOf puts segments on the timeline of the connection whose client is client: µs
// after its SYN.
func ch5TimelineOf(conn string, segs []evidence.Segment,
	client netip.AddrPort) (evidence.Timeline, time.Time) {
	GinkgoHelper()
	t := evidence.Timeline{Conn: conn, Packets: []evidence.TimelinePacket{}}
	i := slices.IndexFunc(segs, func(s evidence.Segment) bool { return s.Src == client && s.Flags == "SYN" })
	Expect(i).To(BeNumerically(">=", 0), "no SYN from %s among %v", client, segs)
	syn := segs[i].Time
	for _, s := range segs {
		from := "server"
		if s.Src == client {
			from = "client"
		}
		t.Packets = append(t.Packets, evidence.TimelinePacket{AtUS: s.Time.Sub(syn).Microseconds(),
			From: from, Src: s.Src.String(), Dst: s.Dst.String(), Flags: s.Flags, Seq: s.Seq,
			Ack: s.Ack, Len: s.Len})
	}
	return t, syn
}

// ch5IsSegment matches a captured segment by its direction and flags.
func ch5IsSegment(src, dst netip.AddrPort, flags string) types.GomegaMatcher {
	return And(HaveField("Src", src), HaveField("Dst", dst), HaveField("Flags", flags))
}

func ch5ErrnoName(e unix.Errno) string {
	if e == 0 {
		return "none"
	}
	return unix.ErrnoName(e)
}

var _ = Describe(Handshake.Title, Label("chapter:5"), func() {
	// Each claim's spec is a function of its own, with the steps it asserts after it, so
	// that the chapter can show the lines that carry each proof and fold the rest.
	for _, fam := range lab.Families() {
		ch5BeforeAcceptSpec(fam)
		ch5EmfileSpec(fam)
		ch5ShedSpec(fam)
	}
})

// --8<-- [start:handshake-before-accept]
// ch5BeforeAcceptSpec is handshake.before-accept's spec over fam.
func ch5BeforeAcceptSpec(fam lab.Family) {
	It("completes the handshake and takes the client's data before accept() is called, over "+
		fam.String(), Label("claim:handshake.before-accept", fam.Name), func() {
		lab.RequireFamily(fam)
		seen := lab.RunInSandbox(ch5BeforeAccept, fam.Loopback.String(), lab.SandboxOptions{})
		timeline, at := ch5RecordBeforeAccept(seen)

		// --8<-- [start:handshake-before-accept-core]
		// connect(2) returned, and the client's socket is ESTABLISHED, with no accept
		// anywhere: the kernel finished the handshake on its own (tcp_check_req creates the
		// child socket on the final ACK and inet_csk_reqsk_queue_add queues it).
		Expect(seen.ClientState).To(Equal("ESTABLISHED"))
		Expect(seen.QueueBefore.Len).To(BeEquivalentTo(1),
			"the listener's queue (TCP_INFO tcpi_unacked) holds the one connection")
		// The wire, as the packet socket on lo saw it: the three segments of the handshake,
		// then the client's data and the server kernel's ACK of it.
		c, l := seen.Client, seen.Listener
		Expect(len(seen.Segments)).To(BeNumerically(">=", 5), "segments: %v", seen.Segments)
		hs := seen.Segments[:5]
		Expect(hs[0]).To(ch5IsSegment(c, l, "SYN"))
		Expect(hs[1]).To(ch5IsSegment(l, c, "SYN,ACK"))
		Expect(hs[2]).To(ch5IsSegment(c, l, "ACK"))
		Expect(hs[3]).To(ch5IsSegment(c, l, "PSH,ACK"))
		Expect(hs[4]).To(ch5IsSegment(l, c, "ACK"))
		// Every one of them, by its kernel timestamp (CLOCK_REALTIME, as time.Now), is
		// before the moment accept4 was called.
		for _, s := range hs {
			Expect(s.Time.Before(seen.AcceptAt)).To(BeTrue(), "%s at %v, accept4 at %v",
				s, s.Time, seen.AcceptAt)
		}
		// accept hands over the connection the capture shows, with the data in it.
		Expect(seen.Peer).To(Equal(seen.Client))
		Expect(seen.Read).To(Equal(seen.Payload))
		// --8<-- [end:handshake-before-accept-core]

		// The data segment carries what write returned, and seq 1 is its first byte, so
		// the server acknowledging 1+n has every byte: the listener's kernel took the data
		// for a socket no one accepted.
		Expect(hs[3].Len).To(Equal(seen.Written), "the data segment carries what write returned")
		Expect(hs[4].Ack).To(BeEquivalentTo(1+seen.Written),
			"the server kernel's ACK covers the data")
		Expect(seen.ClientUnacked).To(BeZero(),
			"the client's send queue (SIOCOUTQ) is empty: nothing waits for an ACK")
		// Exactly the bytes written, no more: the next recv says EAGAIN.
		Expect(errors.Is(seen.ReadAgain, unix.EAGAIN)).To(BeTrue(),
			"recv after the data: want EAGAIN, got %s", ch5ErrnoName(seen.ReadAgain))
		Expect(seen.QueueAfter.Len).To(BeZero())

		// The chapter's figures, from the timeline its picture draws.
		p := timeline.Packets
		lab.Cite(evidence.Figures{"written": seen.Written, "client_state": seen.ClientState,
			"queue_before": seen.QueueBefore.Len, "synack_us": p[1].AtUS, "ack_us": p[2].AtUS,
			"connect_us": at.connect, "data_us": p[3].AtUS, "data_seq": hs[3].Seq,
			"data_acked_us": p[4].AtUS, "data_ack": hs[4].Ack, "accept_us": at.accept,
			"read": len(seen.Read), "payload": string(seen.Read)})
	})
}

// ch5BeforeAcceptAt is when the child's calls happened, in µs after the client's SYN.
type ch5BeforeAcceptAt struct{ connect, write, accept int64 }

// ch5RecordBeforeAccept attaches what the handshake.before-accept child saw, and returns
// the connection's timeline and its calls' times on it: the segments by their kernel
// timestamps, the calls by time.Now in the child, both CLOCK_REALTIME.
func ch5RecordBeforeAccept(seen ch5BeforeAcceptSeen) (evidence.Timeline, ch5BeforeAcceptAt) {
	GinkgoHelper()
	timeline, syn := ch5TimelineOf("the client, accepted after its data", seen.Segments,
		seen.Client)
	us := func(t time.Time) int64 { return t.Sub(syn).Microseconds() }
	at := ch5BeforeAcceptAt{connect: us(seen.ConnectReturned), write: us(seen.WriteReturned),
		accept: us(seen.AcceptAt)}
	lab.Record(evidence.EntryPackets, timeline)
	lab.Record(evidence.EntryAcceptAt, at.accept)
	lab.Record(evidence.EntrySyscalls, []evidence.TimelineCall{
		{Call: "connect returned", AtUS: at.connect, Result: "0"},
		{Call: "write returned", AtUS: at.write, Result: strconv.Itoa(seen.Written)},
		{Call: "accept4 called", AtUS: at.accept, Result: seen.Peer.String()},
	})
	lab.Record(evidence.EntryAcceptQueue, []evidence.QueueAt{
		{When: "after the client's write, before accept", Len: seen.QueueBefore.Len,
			Max: seen.QueueBefore.Max},
		{When: "after accept", Len: seen.QueueAfter.Len, Max: seen.QueueAfter.Max},
	})
	lab.Record(evidence.EntryBytesBeforeAccept, evidence.BytesBeforeAccept{Written: seen.Written,
		Read: len(seen.Read), Payload: string(seen.Read)})
	lab.Record(evidence.EntryTCPStates, []evidence.SocketState{
		{Socket: "client, before accept", State: seen.ClientState}})
	lab.Record(evidence.EntryPorts, evidence.Ports{"listener": {seen.Listener.Port()},
		"client": {seen.Client.Port()}, "accepted peer": {seen.Peer.Port()}})
	return timeline, at
}

// --8<-- [end:handshake-before-accept]

// --8<-- [start:handshake-emfile-queued]
// ch5EmfileSpec is handshake.emfile-queued's spec over fam.
func ch5EmfileSpec(fam lab.Family) {
	text := "leaves the connection queued when accept() fails with EMFILE, sending nothing, " +
		"and hands over that very connection later, over " + fam.String()
	It(text, Label("claim:handshake.emfile-queued", fam.Name), func() {
		lab.RequireFamily(fam)
		seen := lab.RunInSandbox(ch5EmfileQueued, fam.Loopback.String(),
			lab.SandboxOptions{NoFile: ch5EmfileNoFile})
		timeline := ch5RecordEmfile(seen)

		// --8<-- [start:handshake-emfile-queued-core]
		// The table is full: the kernel refused the last open with EMFILE, then accept4
		// with EMFILE too. __sys_accept4_file asks get_unused_fd_flags for a number
		// before it touches the queue, so the connection stays in it.
		Expect(errors.Is(seen.FillErr, unix.EMFILE)).To(BeTrue(),
			"open: want EMFILE, got %s", ch5ErrnoName(seen.FillErr))
		Expect(errors.Is(seen.AcceptErr, unix.EMFILE)).To(BeTrue(),
			"accept4: want EMFILE, got %s", ch5ErrnoName(seen.AcceptErr))
		Expect(seen.QueueBefore.Len).To(BeEquivalentTo(1))
		Expect(seen.QueueAfterEMFILE.Len).To(Equal(seen.QueueBefore.Len),
			"TCP_INFO: the queue is unchanged by the failed accept4")
		// The client heard nothing: its socket is ESTABLISHED, and a recv that must not
		// wait says EAGAIN (no data, no FIN: that would read 0; no RST: that would be
		// ECONNRESET). Nor did the wire carry a FIN or RST from the server.
		Expect(seen.ClientState).To(Equal("ESTABLISHED"))
		Expect(errors.Is(seen.RecvErr, unix.EAGAIN)).To(BeTrue(),
			"recv: want EAGAIN, got %s (n=%d)", ch5ErrnoName(seen.RecvErr), seen.RecvN)
		ch5ExpectNothingFromTheServer(seen, timeline)
		// One descriptor closed, and the next accept4 returns the connection that
		// waited: the same peer port as the client's getsockname, with the byte it sent
		// meanwhile.
		Expect(seen.Peer).To(Equal(seen.Client))
		Expect(seen.Read).To(Equal(seen.Marker))
		// --8<-- [end:handshake-emfile-queued-core]

		Expect(seen.AcceptedFD).To(Equal(seen.Freed),
			"accept4 takes the lowest free number: the one just closed")
		Expect(seen.QueueAfterAccept.Len).To(BeZero())
		ch5ExpectBusyLoop(seen)

		// The chapter's figures. The CPU share is evidence of what never sleeping
		// costs, not a bound: the scheduler decides it.
		spin := seen.Spin
		lab.Cite(evidence.Figures{"limit": seen.Limit, "filled": seen.Filled,
			"fill_errno": ch5ErrnoName(seen.FillErr), "accept_errno": ch5ErrnoName(seen.AcceptErr),
			"queue_before": seen.QueueBefore.Len, "queue_after": seen.QueueAfterEMFILE.Len,
			"client_state": seen.ClientState, "recv_errno": ch5ErrnoName(seen.RecvErr),
			"epoll_rounds": len(seen.Epoll), "spin_epoll_waits": spin.EpollWaits,
			"spin_accept_emfile": spin.AcceptEMFILE, "late_bytes": len(seen.Marker),
			"spin_window_s": float64(spin.WindowUS) / 1e6, "spin_cpu_percent": spin.Percent,
			"freed_fd": seen.Freed, "accepted_fd": seen.AcceptedFD,
			"client_port": seen.Client.Port(), "peer_port": seen.Peer.Port()})
	})
}

// ch5RecordEmfile attaches what the handshake.emfile-queued child saw, and returns the
// connection's timeline.
func ch5RecordEmfile(seen ch5EmfileSeen) evidence.Timeline {
	GinkgoHelper()
	timeline, syn := ch5TimelineOf("the client, queued while accept4 fails with EMFILE",
		seen.Segments, seen.Client)
	us := func(t time.Time) int64 { return t.Sub(syn).Microseconds() }
	lab.Record(evidence.EntryPackets, timeline)
	lab.Record(evidence.EntryAcceptAt, us(seen.AcceptedAt))
	lab.Record(evidence.EntrySyscalls, []evidence.TimelineCall{
		{Call: "accept4 called, the table full", AtUS: us(seen.FirstAcceptAt),
			Result: ch5ErrnoName(seen.AcceptErr)},
		{Call: "write returned on the client", AtUS: us(seen.MarkerAt),
			Result: strconv.Itoa(len(seen.Marker))},
		{Call: "accept4 called, one descriptor freed", AtUS: us(seen.AcceptedAt),
			Result: seen.Peer.String()},
	})
	lab.Record(evidence.EntryDescriptorTable, evidence.DescriptorTable{Limit: seen.Limit,
		Filled: seen.Filled, FillErrno: ch5ErrnoName(seen.FillErr), Freed: seen.Freed,
		AcceptedFD: seen.AcceptedFD})
	lab.Record(evidence.EntryErrno, lab.Refused("accept4", ch5Err(seen.AcceptErr), seen.Listener,
		netip.AddrPort{}))
	lab.Record(evidence.EntryErrno, lab.Refused("recv(MSG_DONTWAIT) on the client",
		ch5Err(seen.RecvErr), seen.Client, netip.AddrPort{}))
	lab.Record(evidence.EntryAcceptQueue, []evidence.QueueAt{
		{When: "before accept4", Len: seen.QueueBefore.Len, Max: seen.QueueBefore.Max},
		{When: "after accept4 failed with EMFILE", Len: seen.QueueAfterEMFILE.Len,
			Max: seen.QueueAfterEMFILE.Max},
		{When: "after a descriptor was freed and accept4 succeeded", Len: seen.QueueAfterAccept.Len,
			Max: seen.QueueAfterAccept.Max},
	})
	lab.Record(evidence.EntryTCPStates, []evidence.SocketState{
		{Socket: "client, after accept4 failed", State: seen.ClientState}})
	lab.Record(evidence.EntryEpollRounds, seen.Epoll)
	lab.Record(evidence.EntryCPUTime, seen.Spin)
	lab.Record(evidence.EntryPorts, evidence.Ports{"listener": {seen.Listener.Port()},
		"client": {seen.Client.Port()}, "accepted peer": {seen.Peer.Port()}})
	return timeline
}

// ch5ExpectNothingFromTheServer: after the handshake, up to the server kernel's ACK of a
// byte the client sent after the failed accepts, no segment from the server's port carries
// FIN or RST. lo delivers in order, so anything the failed accept4 had sent would be before
// that ACK.
func ch5ExpectNothingFromTheServer(seen ch5EmfileSeen, timeline evidence.Timeline) {
	Expect(timeline.Packets).To(ContainElement(And(HaveField("From", "server"),
		HaveField("Flags", "ACK"), HaveField("Ack", BeEquivalentTo(1+len(seen.Marker))))),
		"the capture reaches the server's ACK of the client's late byte")
	for _, s := range seen.Segments {
		if s.Src == seen.Listener {
			Expect(s.Flags).NotTo(SatisfyAny(ContainSubstring("FIN"), ContainSubstring("RST")),
				"%s", s)
		}
	}
}

// ch5ExpectBusyLoop: level-triggered epoll reports the listener on every call while its
// queue is not empty. ep_send_events puts a level-triggered item back on the ready list
// after reporting it, and the next call polls the listener again (inet_csk_listen_poll:
// readable while the accept queue is not empty). A loop that only retries accept4 spins;
// the "cpu_time" entry shows one left to run for ch5SpinFor.
func ch5ExpectBusyLoop(seen ch5EmfileSeen) {
	Expect(seen.Epoll).To(HaveLen(ch5EpollRounds))
	for i, r := range seen.Epoll {
		Expect(r.Ready).To(Equal(1), "round %d", i)
		Expect(r.Listener).To(BeTrue(), "round %d: the listener, with EPOLLIN", i)
		Expect(r.AcceptErrno).To(Equal(unix.ErrnoName(unix.EMFILE)), "round %d", i)
	}
	// The busy loop never slept: every one of its epoll_wait calls, each allowed to wait a
	// second, returned the listener ready. Not one returned 0 (a timeout slept through) or
	// failed with EINTR (a sleep a signal cut short): ep_poll hands back ready events
	// before it looks at signals or sleeps. And every accept4 after them failed with EMFILE
	// again.
	Expect(seen.Spin.EpollWaits).To(BeNumerically(">", 1), "%+v", seen.Spin)
	Expect(seen.Spin.ListenerReady).To(Equal(seen.Spin.EpollWaits),
		"epoll_wait calls that returned the listener: %+v", seen.Spin)
	Expect(seen.Spin.AcceptEMFILE).To(Equal(seen.Spin.EpollWaits),
		"accept4 calls that failed with EMFILE: %+v", seen.Spin)
}

// --8<-- [end:handshake-emfile-queued]

// --8<-- [start:handshake-shed]
// ch5ShedSpec is handshake.shed's spec over fam: the spec, then each of the steps it asserts.
func ch5ShedSpec(fam lab.Family) {
	text := "sheds the connections it has no descriptor for with FIN, by refserver's choice, " +
		"without spinning; RST only with SO_LINGER {1, 0}, over " + fam.String()
	It(text, Label("claim:handshake.shed", fam.Name), func() {
		lab.RequireFamily(fam)
		seen := lab.RunInSandbox(ch5Shed, fam.Loopback.String(),
			lab.SandboxOptions{NoFile: ch5ShedNoFile})
		shed, linger := ch5RecordShed(seen)
		clients := ch5ExpectServedThenShed(seen)

		// --8<-- [start:handshake-shed-core]
		// Every client after the table ran out read end-of-stream, read(2) = 0, and sat
		// in CLOSE_WAIT: its kernel took the peer's FIN (tcp_fin) on its socket.
		for _, c := range seen.Clients[clients.Served:] {
			Expect(c.Errno).To(BeEmpty(), "client %d: read failed", c.Port)
			Expect(c.Read).To(BeZero(),
				"client %d: once the descriptors ran out, end-of-stream", c.Port)
			Expect(c.State).To(Equal("CLOSE_WAIT"), "client %d", c.Port)
		}
		// On the wire: the handshake, then the server's FIN, nothing between (no
		// greeting), and no RST anywhere.
		Expect(len(shed.Packets)).To(BeNumerically(">=", 4), "%v", seen.ShedSegments)
		Expect(lab.FlagsOf(seen.ShedSegments)[:4]).To(
			Equal([]string{"SYN", "SYN,ACK", "ACK", "FIN,ACK"}), "%v", seen.ShedSegments)
		Expect(shed.Packets[3].From).To(Equal("server"))
		Expect(shed.Packets).NotTo(ContainElement(HaveField("Flags", ContainSubstring("RST"))))
		// The FIN is refserver's doing: once every loop had returned, its counts say it
		// accepted and closed one connection for each client that read end-of-stream.
		Expect(seen.Stopped.Shed).To(BeEquivalentTo(clients.Shed),
			"refserver's Stats: %s", seen.Stopped)
		// And the process, server and clients, used little CPU while clients kept coming.
		Expect(seen.CPU.Percent).To(BeNumerically("<", 20), "CPU over the window: %+v", seen.CPU)
		// --8<-- [end:handshake-shed-core]

		logLine := ch5ExpectShedByRefserver(seen, clients)
		ch5ExpectNoSpin(seen)
		ch5ExpectLingerRST(seen.Linger, linger)

		// The chapter's figures.
		first, ack, fin := seen.Clients[0], shed.Packets[2], shed.Packets[3]
		lab.Cite(evidence.Figures{"limit": seen.Table.Limit, "served": clients.Served,
			"shed": clients.Shed, "greeting_bytes": first.Read,
			"greeting": strings.TrimSpace(first.Greeting), "shed_state": seen.ShedClientState,
			"fin_after_ack_us": fin.AtUS - ack.AtUS, "log_line": logLine,
			"window_clients": len(seen.Clients) - clients.Window, "cpu_percent": seen.CPU.Percent,
			"window_s": float64(seen.CPU.WindowUS) / 1e6, "stats_accepted": seen.Stopped.Accepted,
			"stats_shed": seen.Stopped.Shed, "linger_state": seen.Linger.State,
			"linger_errno": ch5ErrnoName(seen.Linger.ReadErr)})
	})
}

// ch5RecordShed attaches what the shedding child saw, and returns the timelines of the first
// client shed and of the SO_LINGER one.
func ch5RecordShed(seen ch5ShedSeen) (shed, linger evidence.Timeline) {
	GinkgoHelper()
	lab.Record(evidence.EntryShedClients, seen.Clients)
	lab.Record(evidence.EntryCPUTime, seen.CPU)
	lab.Record(evidence.EntryRefserverStats, ch5ServerSeen{Serving: seen.Serving,
		Stopped: seen.Stopped, Log: seen.Log})
	shed, _ = ch5TimelineOf("a client the server shed", seen.ShedSegments, seen.ShedClient)
	lab.Record(evidence.EntryPackets, shed)
	linger, _ = ch5TimelineOf("a client closed with SO_LINGER {1, 0}", seen.Linger.Segments,
		seen.Linger.Client)
	lab.Record(evidence.EntryPackets, linger)
	lab.Record(evidence.EntryErrno, lab.Refused("read after SO_LINGER {1, 0} and close",
		ch5Err(seen.Linger.ReadErr), seen.Linger.Client, netip.AddrPort{}))
	lab.Record(evidence.EntryTCPStates, []evidence.SocketState{
		{Socket: "a shed client, after reading end-of-stream", State: seen.ShedClientState},
		{Socket: "the SO_LINGER client, after ECONNRESET", State: seen.Linger.State},
	})
	lab.Record(evidence.EntryDescriptorTable, seen.Table)
	return shed, linger
}

// ch5ShedClients is how the shedding proof's clients fared, in the order they came: Served
// first, then Shed; the CPU window's clients from index Window on.
type ch5ShedClients struct{ Served, Shed, Window int }

// ch5ExpectServedThenShed: the clients that came before the table ran out were served (the
// greeting has bytes), exactly as many as the kernel's numbers say. It returns where the
// others, the clients shed, begin.
func ch5ExpectServedThenShed(seen ch5ShedSeen) ch5ShedClients {
	firstShed := slices.IndexFunc(seen.Clients, func(c evidence.ShedClient) bool {
		return c.Read <= 0
	})
	Expect(firstShed).To(BeNumerically(">", 0),
		"some clients served, then one not: %v", seen.Clients)
	// The table ran out exactly where the kernel's numbers say: every client served holds
	// two descriptors (its own and accept4's), and the free count (RLIMIT_NOFILE from
	// getrlimit less /proc/self/fd) was made odd, so the last free one went to a client's
	// socket() and none was left for accept4.
	free := int(seen.Table.Limit) - seen.Table.Open
	if seen.Table.Pad {
		free--
	}
	Expect(firstShed).To(Equal(free/2), "clients served, of %d free descriptors", free)
	// A served client's first read is refserver's greeting: its own connection, as its
	// kernel names it (getsockname -> getpeername), first on the line.
	for _, c := range seen.Clients[:firstShed] {
		Expect(c.Greeting).To(HavePrefix(c.Tuple+" "), "client %d", c.Port)
	}
	window := slices.IndexFunc(seen.Clients, func(c evidence.ShedClient) bool {
		return c.Phase == "window"
	})
	Expect(window).To(BeNumerically(">", firstShed), "clients knocked during the CPU window")
	return ch5ShedClients{Served: firstShed, Shed: len(seen.Clients) - firstShed, Window: window}
}

// ch5ExpectShedByRefserver: the rest of refserver's own counts, once every loop had
// returned: admit let in exactly the clients served, and refused none. Its first shed line,
// which it returns, names the first client shed.
func ch5ExpectShedByRefserver(seen ch5ShedSeen, clients ch5ShedClients) string {
	Expect(seen.Stopped.Accepted).To(BeEquivalentTo(clients.Served),
		"refserver's Stats: %s", seen.Stopped)
	Expect(seen.Stopped.Refused).To(BeZero(), "refserver's Stats: %s", seen.Stopped)
	Expect(seen.Serving.Open).To(BeEquivalentTo(clients.Served),
		"refserver's Stats: %s", seen.Serving)
	shedLine := slices.IndexFunc(seen.Log, func(l string) bool {
		return strings.HasPrefix(l, "shed ")
	})
	Expect(shedLine).To(BeNumerically(">=", 0), "refserver's log: %q", seen.Log)
	Expect(seen.Log[shedLine]).To(HavePrefix("shed %s: ", seen.ShedClient))
	return seen.Log[shedLine]
}

// ch5ExpectNoSpin: while refserver served, nothing waited in the listener's queue (TCP_INFO,
// read by Stats; a max of 0 would mean it could not be read), so level-triggered epoll had
// nothing to report again. And the CPU window, over which the spec holds the process to
// little CPU (a server that left clients queued under level-triggered epoll would use a
// whole core), was measured at all.
func ch5ExpectNoSpin(seen ch5ShedSeen) {
	Expect(seen.Serving.Queue.Max).To(BeNumerically(">", 0), "refserver's Stats: %s", seen.Serving)
	Expect(seen.Serving.Queue.Len).To(BeZero(), "refserver's Stats: %s", seen.Serving)
	Expect(seen.CPU.WindowUS).To(BeNumerically(">", 0))
}

// ch5ExpectLingerRST: the contrast. SO_LINGER {on, 0 s} makes close(2) abort the connection
// (tcp_disconnect sends RST), and the client's read fails with ECONNRESET. The RST ends the
// client's socket too: tcp_reset -> tcp_done sets TCP_CLOSE.
func ch5ExpectLingerRST(seen ch5LingerSeen, linger evidence.Timeline) {
	Expect(errors.Is(seen.ReadErr, unix.ECONNRESET)).To(BeTrue(),
		"read: want ECONNRESET, got %s", ch5ErrnoName(seen.ReadErr))
	Expect(seen.State).To(Equal("CLOSE"))
	Expect(linger.Packets).To(ContainElement(And(HaveField("From", "server"),
		HaveField("Flags", ContainSubstring("RST")))))
}

// --8<-- [end:handshake-shed]
