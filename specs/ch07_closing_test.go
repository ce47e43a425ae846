//go:build linux

package specs

import (
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// ch7FinTimeout is net.ipv4.tcp_fin_timeout in the sandbox of the close.timewait proof, in
// seconds: far from TIME_WAIT's 60 s, so that the two timers cannot be mistaken.
const ch7FinTimeout = 7

// ch7TimeWaitLen is TCP_TIMEWAIT_LEN, include/net/tcp.h: "how long to wait to destroy
// TIME-WAIT state, about 60 seconds", compiled in, no sysctl.
const ch7TimeWaitLen = 60 * time.Second

var _ = Describe(Closing.Title, Label("chapter:7"), func() {
	for _, fam := range lab.Families() {
		lo := fam.Loopback.String()

		// --8<-- [start:close-half]
		It("sends one FIN on shutdown(SHUT_WR), and the half-closed end still reads, over "+
			fam.String(), Label("claim:close.half", fam.Name), func() {
			lab.RequireFamily(fam)
			seen := lab.RunInSandbox(ch7HalfChild, lo, lab.SandboxOptions{})
			lab.Record(evidence.EntryCloseHalf, seen)
			fins := ch7WithFlag(seen.Packets, "FIN")
			lab.Cite(evidence.Figures{"client_state": seen.States[0].State,
				"server_state": seen.States[1].State, "read": seen.Read,
				"write_err": seen.WriteErr, "fins": len(fins), "packets": len(seen.Packets)})

			// --8<-- [start:close-half-core]
			// TCP_INFO on each end, once the client's FIN was acknowledged.
			Expect(seen.States[0].State).To(Equal("FIN_WAIT2"), "the client, after its FIN")
			Expect(seen.States[1].State).To(Equal("CLOSE_WAIT"), "the server, after that FIN")
			Expect(ch7Result(seen.Calls, "server", "read")).To(Equal("EOF"), "the server's read")
			// The other direction is open: the server's bytes reach the half-closed client,
			// which cannot send any more.
			Expect(seen.Read).To(Equal("still here"), "the client's read after its own FIN")
			Expect(seen.WriteErr).To(Equal("EPIPE"), "the client's write after SHUT_WR")
			Expect(seen.States[2].State).To(Equal("FIN_WAIT2"), "the client, at the end")
			// On the wire: one FIN, the client's, no RST, and the server's bytes after it.
			Expect(fins).To(HaveLen(1), "FINs on lo: %v", seen.Packets)
			Expect(fins[0].Src.String()).To(Equal(seen.Client), "the FIN's sender")
			Expect(ch7WithFlag(seen.Packets, "RST")).To(BeEmpty())
			Expect(ch7DataAfter(seen.Packets, fins[0], seen.Server)).To(Equal(len("still here")),
				"the server's bytes on lo after the client's FIN")
			// --8<-- [end:close-half-core]
		})
		// --8<-- [end:close-half]

		// --8<-- [start:close-half-refserver]
		It("has refserver's Shutdown send FIN first and read the client's late bytes, over "+
			fam.String(), Label("claim:close.half", fam.Name), func() {
			lab.RequireFamily(fam)
			seen := lab.RunInSandbox(ch7LingerChild, lo, lab.SandboxOptions{})
			lab.Record(evidence.EntryCloseLinger, seen)
			fins := ch7WithFlag(seen.Packets, "FIN")
			Expect(fins).NotTo(BeEmpty(), "FINs on lo: %v", seen.Packets)
			// The chapter cites these beside the plain half-close's: "ref_" tells them apart.
			lab.Cite(evidence.Figures{"ref_echo": seen.Echo, "ref_late_unacked": seen.LateUnacked,
				"ref_client_state": seen.States[0].State, "ref_server_state": seen.States[1].State,
				"ref_client_after_late": seen.States[2].State, "ref_server_end": seen.States[3].State,
				"ref_late_bytes": ch7DataAfter(seen.Packets, fins[0], seen.Client)})

			// --8<-- [start:close-half-refserver-core]
			Expect(seen.Echo).To(Equal("hello"), "refserver's echo before Shutdown")
			Expect(ch7Result(seen.Calls, "client", "read", 2)).To(Equal("EOF"),
				"the client's read after Shutdown")
			Expect(seen.States[0].State).To(Equal("CLOSE_WAIT"), "the client (TCP_INFO)")
			Expect(seen.States[1].State).To(Equal("FIN_WAIT2"), "refserver's end (/proc/net/tcp)")
			// The client's late bytes were acknowledged, and nothing reset the connection:
			// refserver's socket was shut for writing only, and read them.
			Expect(seen.LateUnacked).To(BeZero(), "the client's tcpi_unacked after its late bytes")
			Expect(seen.States[2].State).To(Equal("CLOSE_WAIT"), "the client after its late bytes")
			Expect(seen.ShutdownErr).To(Equal("<nil>"), "refserver's Shutdown")
			Expect(seen.Resets).To(BeZero(), "refserver's Stats().Resets")
			Expect(seen.States[3].State).To(Equal("TIME_WAIT"), "refserver's end: it closed first")
			// On the wire: refserver's FIN, the client's bytes after it, the client's FIN.
			Expect(ch7WithFlag(seen.Packets, "RST")).To(BeEmpty(), "RSTs on lo: %v", seen.Packets)
			Expect(fins).To(HaveLen(2), "FINs on lo: %v", seen.Packets)
			Expect(fins[0].Src.String()).To(Equal(seen.Server), "the first FIN's sender")
			Expect(fins[1].Src.String()).To(Equal(seen.Client), "the second FIN's sender")
			Expect(ch7DataAfter(seen.Packets, fins[0], seen.Client)).To(Equal(len("late")),
				"the client's bytes on lo after refserver's FIN")
			// --8<-- [end:close-half-refserver-core]
		})
		// --8<-- [end:close-half-refserver]

		// --8<-- [start:close-rst-unread]
		It("sends RST on close() with unread input, and FIN once it is read, over "+fam.String(),
			Label("claim:close.rst-unread", fam.Name), func() {
				lab.RequireFamily(fam)
				seen := lab.RunInSandbox(ch7UnreadChild, lo, lab.SandboxOptions{})
				lab.Record(evidence.EntryCloseUnread, seen)
				Expect(seen).To(HaveLen(2))
				unread, readFirst := seen[0], seen[1]
				lab.Cite(evidence.Figures{"unread": unread.Unread, "unread_received": unread.Received,
					"abort_on_close": unread.AbortOnClose, "read_abort_on_close": readFirst.AbortOnClose,
					"unread_flags":        ch7FlagsFrom(unread.Packets, unread.Server, true),
					"read_received":       readFirst.Received,
					"unread_client_state": unread.States[0].State,
					"read_flags":          ch7FlagsFrom(readFirst.Packets, readFirst.Server, true),
					"read_client_state":   readFirst.States[0].State})

				// --8<-- [start:close-rst-unread-core]
				// The client's 3 bytes, acknowledged by the server's kernel, never read.
				Expect(unread.Unread).To(Equal(3), "SIOCINQ on the server's end before close()")
				Expect(unread.Unacked).To(BeZero(), "the client's tcpi_unacked then")
				Expect(unread.AbortOnClose).To(BeEquivalentTo(1), "TcpExt TCPAbortOnClose")
				// close() then: RST, and no FIN, from the server.
				Expect(ch7FlagsFrom(unread.Packets, unread.Server, true)).To(Equal(
					[]string{"RST,ACK"}), "the server's segments, unread input: %v", unread.Packets)
				// What had reached the client is read first; then the reset is told.
				Expect(unread.Received).To(Equal([]string{"bye", "ECONNRESET"}), "the client's reads")
				Expect(unread.States[0].State).To(Equal("CLOSE"), "the client, after the RST")
				// The same close with the input read first: FIN, and end-of-stream.
				Expect(readFirst.Unread).To(BeZero(), "SIOCINQ on the server's end before close()")
				Expect(readFirst.AbortOnClose).To(BeZero(), "TcpExt TCPAbortOnClose")
				Expect(ch7FlagsFrom(readFirst.Packets, readFirst.Server, true)).To(Equal(
					[]string{"FIN,ACK"}), "the server's segments, input read: %v", readFirst.Packets)
				Expect(readFirst.Received).To(Equal([]string{"bye", "EOF"}), "the client's reads")
				Expect(readFirst.States[0].State).To(Equal("CLOSE_WAIT"), "the client, after the FIN")
				// --8<-- [end:close-rst-unread-core]
			})
		// --8<-- [end:close-rst-unread]

		// --8<-- [start:close-timewait]
		It("keeps the first closer's end in TIME_WAIT for 60 s, and nothing of the other, over "+
			fam.String(), Label("claim:close.timewait", fam.Name), func() {
			lab.RequireFamily(fam)
			fin := strconv.Itoa(ch7FinTimeout)
			seen := lab.RunInSandbox(ch7TimeWaitChild, lo, lab.SandboxOptions{
				Sysctls: map[string]string{"net.ipv4.tcp_fin_timeout": fin}})
			lab.Record(evidence.EntryCloseTimeWait, seen)
			st := ch7StatesByName(seen.States)
			// Each timer's length: what /proc/net/tcp says is left, plus how long it had run
			// when read, since the segment that started it: the server's FIN (its ACK came
			// back within microseconds) for FIN_WAIT2, the client's first FIN for TIME_WAIT.
			fins := ch7WithFlag(seen.Packets, "FIN")
			Expect(len(fins)).To(BeNumerically(">=", 2), "FINs on lo: %v", seen.Packets)
			fw2 := ch7Timer(st["server FIN_WAIT2"], fins[0])
			tw := ch7Timer(st["server TIME_WAIT"], fins[1])
			lab.Record(evidence.EntryCloseTimers, []evidence.CloseTimer{fw2, tw})
			lab.Cite(evidence.Figures{"fin_timeout": seen.FinTimeout, "fin_wait2_s": fw2.TotalMS / 1e3,
				"time_wait_s": tw.TotalMS / 1e3, "time_wait_left_s": tw.LeftMS / 1e3,
				"left_server": seen.Left["server"], "fin_again_ms": ch7Gap(fins, seen.Client),
				"tw_last_left_s": seen.States[len(seen.States)-1].TimerLeftMS / 1e3,
				"client_fins":    len(ch7FlagsFrom(fins, seen.Client, false)),
				"linger_flags":   ch7FlagsFrom(seen.Linger.Packets, seen.Linger.Server, true),
				"linger_read":    seen.Linger.Read})

			// --8<-- [start:close-timewait-core]
			Expect(seen.FinTimeout).To(Equal(fin), "net.ipv4.tcp_fin_timeout, read back")
			for _, s := range []string{"CLOSE_WAIT", "LAST_ACK", "CLOSE"} {
				Expect(st["client "+s].From).To(Equal("TCP_INFO"), "the client passed through "+s)
			}
			// The orphan's FIN_WAIT2 runs on tcp_fin_timeout; TIME_WAIT on its own 60 s. A sum
			// may be a scheduling delay long, never short: generous bounds.
			Expect(fw2.TotalMS).To(BeNumerically("~", ch7FinTimeout*1e3, 1e3), "FIN_WAIT2's timer")
			Expect(tw.TotalMS).To(BeNumerically("~", ch7TimeWaitLen.Seconds()*1e3, 5e3),
				"TIME_WAIT's timer")
			// Who holds what, once both descriptors are closed: the server's end, in TIME_WAIT.
			Expect(seen.Left).To(Equal(map[string]string{"server": "TIME_WAIT", "client": ""}),
				"the connection in /proc/net/tcp")
			// SO_LINGER {1, 0}: an RST instead of FIN, and nothing left at either end.
			Expect(ch7FlagsFrom(seen.Linger.Packets, seen.Linger.Server, true)).To(Equal(
				[]string{"RST,ACK"}), "the server's segments, SO_LINGER {1, 0}: %v", seen.Linger.Packets)
			Expect(seen.Linger.Read).To(Equal("ECONNRESET"), "the client's read")
			Expect(seen.Linger.States[0].State).To(Equal("CLOSE"), "the client, after the RST")
			Expect(seen.Linger.Left).To(Equal(map[string]string{"server": "", "client": ""}),
				"the reset connection in /proc/net/tcp")
			// --8<-- [end:close-timewait-core]
		})
		// --8<-- [end:close-timewait]

		// --8<-- [start:close-reuseaddr]
		It("restarts refserver on a port its closed connections hold in TIME_WAIT, over "+
			fam.String(), Label("claim:close.reuseaddr", fam.Name), func() {
			lab.RequireFamily(fam)
			seen := lab.RunInSandbox(ch7ReuseChild, lo, lab.SandboxOptions{})
			lab.Record(evidence.EntryCloseReuseAddr, seen)
			lab.Cite(evidence.Figures{"addr": seen.Addr, "time_waits": len(seen.TimeWaits),
				"plain_bind": seen.PlainBind, "reuseaddr": seen.ReuseAddr, "echo": seen.Echo,
				"time_waits_after": len(seen.TimeWaitsAfter)})

			// --8<-- [start:close-reuseaddr-core]
			// The first run's three connections, its end first, in TIME_WAIT on its port, and
			// nothing listening there: a plain bind() is refused.
			Expect(seen.TimeWaits).To(HaveLen(3), "TIME_WAITs on %s after the first run", seen.Addr)
			Expect(seen.Listening).To(BeFalse(), "a LISTEN row on %s", seen.Addr)
			Expect(seen.PlainBind).To(Equal("EADDRINUSE"), "bind(%s) without SO_REUSEADDR", seen.Addr)
			// refserver's own listener code binds and serves there at once.
			Expect(seen.Restart).To(Equal("<nil>"), "refserver.New on %s", seen.Addr)
			Expect(seen.ReuseAddr).To(Equal(1), "SO_REUSEADDR on refserver's listener (getsockopt)")
			Expect(seen.Narration).To(ContainElement(HaveSuffix("SO_REUSEADDR, 1) = 0")))
			Expect(seen.Narration).To(ContainElement(MatchRegexp(`^bind\(.*\) = 0$`)))
			Expect(seen.Echo).To(Equal("ping"), "the second run's echo")
			Expect(seen.TimeWaitsAfter).To(ContainElements(seen.TimeWaits), "the TIME_WAITs, still")
			// --8<-- [end:close-reuseaddr-core]
		})
		// --8<-- [end:close-reuseaddr]

		// --8<-- [start:close-listener-resets]
		It("resets every connection still in refserver's accept queue at Shutdown, over "+
			fam.String(), Label("claim:close.listener-resets", fam.Name), func() {
			lab.RequireFamily(fam)
			seen := lab.RunInSandbox(ch7ListenerResetChild, lo, lab.SandboxOptions{})
			lab.Record(evidence.EntryCloseListener, seen)
			rsts := ch7WithFlag(seen.Packets, "RST")
			reset := 0
			for _, c := range seen.Clients {
				if c.Read == "ECONNRESET" {
					reset++
				}
			}
			said := ch7Line(seen.Narration, "the listener is gone")
			var seqs []uint32
			for _, r := range rsts {
				seqs = append(seqs, r.Seq)
			}
			lab.Cite(evidence.Figures{"queued": seen.Queued, "clients": len(seen.Clients),
				"reset": reset, "rsts": len(rsts), "rst_seqs": seqs, "narration": said})

			// --8<-- [start:close-listener-resets-core]
			Expect(seen.Queued).To(BeEquivalentTo(len(seen.Clients)), "the accept queue (TCP_INFO)")
			for _, c := range seen.Clients {
				Expect(c.Before).To(Equal("ESTABLISHED"), "client %s before Shutdown", c.Client)
				Expect(c.Unacked).To(BeZero(), "client %s: its byte, acknowledged", c.Client)
				Expect(c.Read).To(Equal("ECONNRESET"), "client %s: its read after Shutdown", c.Client)
				Expect(c.After).To(Equal("CLOSE"), "client %s after the RST", c.Client)
			}
			// One RST to each client, at SND.NXT: the server had sent only its SYN-ACK, so
			// one past its ISN. No FIN.
			Expect(rsts).To(HaveLen(len(seen.Clients)), "RSTs on lo: %v", seen.Packets)
			for _, r := range rsts {
				Expect(r.Src.String()).To(Equal(seen.Listener), "%v", r)
				Expect(r.Seq).To(BeEquivalentTo(1), "the RST's relative sequence number: %v", r)
			}
			Expect(ch7WithFlag(seen.Packets, "FIN")).To(BeEmpty())
			// refserver says what it did, with the count it read before close(2).
			Expect(said).To(ContainSubstring(
				"the " + strconv.Itoa(reset) + " connections still in its accept queue were reset"))
			// --8<-- [end:close-listener-resets-core]
		})
		// --8<-- [end:close-listener-resets]
	}
})

// ch7WithFlag is the segments with flag among their flags.
func ch7WithFlag(segs []evidence.Segment, flag string) []evidence.Segment {
	var out []evidence.Segment
	for _, s := range segs {
		if strings.Contains(s.Flags, flag) {
			out = append(out, s)
		}
	}
	return out
}

// ch7FlagsFrom lists the flags of the segments from src; with closing, only of those that
// carry FIN or RST.
func ch7FlagsFrom(segs []evidence.Segment, src string, closing bool) []string {
	var out []string
	for _, s := range segs {
		if s.Src.String() == src && (!closing || strings.ContainsAny(s.Flags, "FR")) {
			out = append(out, s.Flags)
		}
	}
	return out
}

// ch7DataAfter is the bytes src sent after the segment mark.
func ch7DataAfter(segs []evidence.Segment, mark evidence.Segment, src string) int {
	n, after := 0, false
	for _, s := range segs {
		if after && s.Src.String() == src {
			n += s.Len
		}
		after = after || s == mark
	}
	return n
}

// ch7Result is what the nth call (from 1) named call of who returned, "" if there is none.
func ch7Result(calls evidence.Calls, who, call string, nth ...int) string {
	want := 1
	if len(nth) > 0 {
		want = nth[0]
	}
	for _, c := range calls {
		if c.Who == who && c.Call == call {
			if want--; want == 0 {
				return c.Result
			}
		}
	}
	return ""
}

// ch7StatesByName indexes the readings by "who STATE": the first of each.
func ch7StatesByName(states []evidence.StateSeen) map[string]evidence.StateSeen {
	m := map[string]evidence.StateSeen{}
	for _, s := range states {
		if _, ok := m[s.Who+" "+s.State]; !ok {
			m[s.Who+" "+s.State] = s
		}
	}
	return m
}

// ch7Timer is a timer read from /proc/net/tcp, and how long it had run when read, counted
// from the segment that started it.
func ch7Timer(read evidence.StateSeen, start evidence.Segment) evidence.CloseTimer {
	ran := float64(read.At.Sub(start.Time).Microseconds()) / 1e3
	return evidence.CloseTimer{State: read.State, LeftMS: read.TimerLeftMS, RanMS: ran, TotalMS: read.TimerLeftMS + ran}
}

// ch7Line is the first line of the narration that contains s.
func ch7Line(lines []string, s string) string {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// ch7Gap is the time between src's first two FINs, in ms: the retransmission timeout.
func ch7Gap(fins []evidence.Segment, src string) float64 {
	var at []evidence.Segment
	for _, f := range fins {
		if f.Src.String() == src {
			at = append(at, f)
		}
	}
	if len(at) < 2 {
		return 0
	}
	return float64(at[1].Time.Sub(at[0].Time).Microseconds()) / 1e3
}
