//go:build linux

package specs

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"portproof/specs/evidence"
	"portproof/specs/lab"
)

var _ = Describe(Queues.Title, Label("chapter:8"), func() {
	for _, fam := range lab.Families() {
		lo := fam.Loopback.String()

		// --8<-- [start:queue-defer]
		It("leaves the client ESTABLISHED and the server a SYN_RECV request until data, over "+
			fam.String(), Label("claim:queue.synrecv", fam.Name), func() {
			lab.RequireFamily(fam)
			seen := lab.RunInSandbox(ch8DeferChild, lo, lab.SandboxOptions{})
			lab.Record(evidence.EntryQueueDefer, seen)
			Expect(seen.Views).To(HaveLen(2))
			early, late := seen.Views[0], seen.Views[1]
			lab.Cite(evidence.Figures{"defer_asked": ch8DeferSeconds, "defer_s": seen.Defer,
				"client_state": early.Client, "server_state": early.Server, "queue": early.Queue,
				"accept": seen.Accept, "defer_drops": seen.Counters["TCPDeferAcceptDrop"],
				"queue_after": late.Queue, "server_after": late.Server, "read": seen.Read})

			// --8<-- [start:queue-defer-core]
			// connect() has returned: the client's kernel had the SYN-ACK and sent its ACK.
			Expect(early.Client).To(Equal("ESTABLISHED"), "the client after connect() (TCP_INFO)")
			// The server's kernel dropped that ACK and kept a request, outside the queue.
			Expect(seen.Counters["TCPDeferAcceptDrop"]).To(BeEquivalentTo(1), "TCPDeferAcceptDrop")
			Expect(early.Server).To(Equal("SYN_RECV"), "the server's end in /proc/net/tcp")
			Expect(early.Queue).To(BeZero(), "the accept queue (TCP_INFO)")
			Expect(seen.Accept).To(Equal("EAGAIN"), "accept4 before the client's data")
			Expect(seen.Readable).To(BeFalse(), "poll(POLLIN) on the listener before the data")
			// The data completes the connection, and only then can it be accepted.
			Expect(late.Queue).To(BeEquivalentTo(1), "the accept queue once the data arrived")
			Expect(late.Server).To(Equal("ESTABLISHED"), "the server's end once the data arrived")
			Expect(seen.Accepted).To(Equal(seen.Client), "accept4's peer")
			Expect(seen.Read).To(Equal("GET"), "what the server read")
			Expect(lab.FlagsOf(seen.Packets)).To(Equal(
				[]string{"SYN", "SYN,ACK", "ACK", "PSH,ACK", "ACK"}), "on lo: %v", seen.Packets)
			// --8<-- [end:queue-defer-core]
		})
		// --8<-- [end:queue-defer]

		// --8<-- [start:queue-overflow]
		It("drops, or with tcp_abort_on_overflow resets, deferred data meeting a full queue, over "+
			fam.String(), Label("claim:queue.synrecv", fam.Name), func() {
			lab.RequireFamily(fam)
			figures := evidence.Figures{}
			for _, abort := range []string{"0", "1"} {
				seen := lab.RunInSandbox(ch8OverflowChild, lo, lab.SandboxOptions{
					Sysctls: map[string]string{"net.ipv4.tcp_abort_on_overflow": abort}})
				lab.Record(evidence.EntryQueueOverflow, seen)
				full, after := seen.Views[0], seen.Views[1]
				for k, v := range map[string]any{"queue": full.Queue, "queue_max": full.QueueMax,
					"overflows": seen.Counters["ListenOverflows"], "recv": seen.Recv,
					"drops": seen.Counters["ListenDrops"], "client_state": after.Client,
					"server_state": after.Server, "unacked": after.Unacked,
					"resets": len(ch7WithFlag(seen.Packets, "RST"))} {
					figures[k+"_"+abort] = v
				}
				Expect(seen.AbortOnOverflow).To(Equal(abort), "tcp_abort_on_overflow, read back")
				Expect(seen.Cookies).To(BeZero(), "SyncookiesSent: every request was kept")

				// --8<-- [start:queue-overflow-core]
				// Before the client's bytes: the queue full of fillers, the client ESTABLISHED
				// with a request in SYN_RECV on the server.
				Expect(full.QueueMax).To(BeEquivalentTo(ch8OverflowBacklog), "the queue's limit")
				Expect(full.Queue).To(Equal(full.QueueMax+1), "the accept queue, full")
				Expect(full.Client).To(Equal("ESTABLISHED"), "the client before its bytes")
				Expect(full.Server).To(Equal("SYN_RECV"), "the client's request on the server")
				// Its bytes find the queue full: one overflow, read as they arrived.
				Expect(seen.Counters["ListenOverflows"]).To(BeEquivalentTo(1), "ListenOverflows")
				Expect(seen.Counters["ListenDrops"]).To(BeEquivalentTo(1), "ListenDrops")
				if abort == "0" { // dropped: nothing answers, the bytes wait unacknowledged
					Expect(seen.Recv).To(Equal("EAGAIN"), "the client's read")
					Expect(after.Client).To(Equal("ESTABLISHED"), "the client")
					Expect(after.Unacked).To(BeEquivalentTo(1), "the client's tcpi_unacked")
					Expect(after.Server).To(Equal("SYN_RECV"), "the request, kept")
					Expect(ch7WithFlag(seen.Packets, "RST")).To(BeEmpty())
					continue
				}
				// Reset: embryonic_reset sends RST and forgets the request.
				Expect(seen.Recv).To(Equal("ECONNRESET"), "the client's read")
				Expect(after.Client).To(Equal("CLOSE"), "the client")
				Expect(after.Server).To(BeEmpty(), "the request, gone from /proc/net/tcp")
				Expect(seen.Counters["EmbryonicRsts"]).To(BeEquivalentTo(1), "EmbryonicRsts")
				Expect(ch7FlagsFrom(seen.Packets, seen.Listener, true)).To(Equal([]string{"RST"}))
				// --8<-- [end:queue-overflow-core]
			}
			lab.Cite(figures)
		})
		// --8<-- [end:queue-overflow]

		// --8<-- [start:queue-syncookies]
		It("answers a SYN flood with cookies and keeps nothing, or drops it with 0, over "+
			fam.String(), Label("claim:queue.syncookies", fam.Name), func() {
			lab.RequireFamily(fam)
			figures := evidence.Figures{}
			for _, mode := range []string{"2", "1", "0"} {
				seen := lab.RunInSandbox(ch8CookieChild, lo, lab.SandboxOptions{
					Sysctls: map[string]string{"net.ipv4.tcp_syncookies": mode}})
				lab.Record(evidence.EntryQueueSyncookies, seen)
				kept, cookies, dropped := ch8Tally(seen.Syns)
				c := seen.Counters
				for k, v := range map[string]any{"syns": len(seen.Syns), "kept": kept,
					"cookies": cookies, "dropped": dropped, "sent": c["SyncookiesSent"],
					"recv": c["SyncookiesRecv"], "listen_drops": c["ListenDrops"],
					"full_drops": c["TCPReqQFullDrop"], "read": seen.Read,
					"rsts": len(ch7WithFlag(seen.Packets, "RST"))} {
					figures[k+"_"+mode] = v
				}
				figures["backlog"], figures["max_syn_backlog"] = seen.Backlog, seen.MaxSynBacklog
				Expect(seen.Syncookies).To(Equal(mode), "tcp_syncookies, read back")

				// --8<-- [start:queue-syncookies-core]
				// Each SYN, in order: a request kept (SYN_RECV grows by one), a SYN-ACK whose
				// ISN is a cookie (SyncookiesSent rose, SYN_RECV did not), or a drop.
				held := 0
				for _, syn := range seen.Syns {
					if !syn.Dropped && !syn.Cookie {
						held++
					}
					Expect(syn.Answer).To(Equal(map[bool]string{true: "", false: "SYN,ACK"}[syn.Dropped]))
					Expect(syn.SynRecv).To(Equal(held), "requests in SYN_RECV after port %d", syn.Port)
				}
				switch mode {
				case "2": // a cookie for every SYN, and nothing kept
					Expect(cookies).To(Equal(len(seen.Syns)), "SYN-ACKs with a cookie")
				case "1": // requests until the SYN queue is full, then cookies
					Expect(kept).To(BeNumerically(">=", seen.Backlog), "requests kept")
					Expect(cookies).To(Equal(len(seen.Syns)-kept), "SYN-ACKs with a cookie")
				case "0": // requests until the SYN queue is full, then nothing
					Expect(kept).To(BeNumerically(">=", seen.Backlog), "requests kept")
					Expect(dropped).To(Equal(len(seen.Syns)-kept), "SYNs dropped")
					Expect(c["ListenDrops"]).To(BeEquivalentTo(dropped), "ListenDrops")
					Expect(c["TCPReqQFullDrop"]).To(BeEquivalentTo(dropped), "TCPReqQFullDrop")
					Expect(c["SyncookiesSent"]).To(BeZero(), "SyncookiesSent")
				}
				// --8<-- [end:queue-syncookies-core]
				// The SYN-ACKs' RSTs met the listener's filter, not its requests.
				Expect(ch7WithFlag(seen.Packets, "RST")).To(HaveLen(kept + cookies))
				if mode == "0" {
					continue
				}
				// --8<-- [start:queue-syncookies-client]
				// A real client, through a cookie: its ACK made the connection, no request was
				// kept for it, and its bytes reached the server.
				Expect(c["SyncookiesSent"]).To(BeEquivalentTo(cookies+1), "SyncookiesSent")
				Expect(seen.Connected).To(Equal("0"), "the client's connect()")
				Expect(seen.ClientCounters["SyncookiesSent"]).To(BeEquivalentTo(1), "its cookie")
				Expect(seen.ClientCounters["SyncookiesRecv"]).To(BeEquivalentTo(1), "its ACK's")
				Expect(seen.ClientSynRecv).To(Equal(kept), "requests in SYN_RECV once it connected")
				Expect(seen.Read).To(Equal("through"), "what the server read from it")
				// --8<-- [end:queue-syncookies-client]
			}
			lab.Cite(figures)
		})
		// --8<-- [end:queue-syncookies]
	}
})

// ch8Tally counts the SYNs whose request was kept, those answered with a cookie, and those
// dropped.
func ch8Tally(syns []evidence.FloodSyn) (kept, cookies, dropped int) {
	for _, s := range syns {
		switch {
		case s.Dropped:
			dropped++
		case s.Cookie:
			cookies++
		case s.Answer != "":
			kept++
		}
	}
	return kept, cookies, dropped
}
