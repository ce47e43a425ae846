package main

import (
	"fmt"
	"net/netip"
	"strings"

	"portproof/specs/evidence"
)

// Chapter 4's pictures, drawn from the evidence ch04_backlog_test.go records, decoded into
// its own types (specs/evidence/backlog.go): the accept queue filling
// (evidence.EntryBacklogQueue, EntryBacklogStates, EntryBacklogFill) and a connect() to a
// full queue over time (EntryBacklogOverflow, EntryBacklogPackets, EntryBacklogCounters).

// decodeFirst decodes into v the first entry named name, of p's passed specs, IPv4 first,
// that decodes, and tells whether there was one.
func decodeFirst(p proof, name string, v any) bool {
	_, err := fromSpecs(p, name, func(e reportEntry) ([]byte, error) {
		return nil, e.decode(v)
	})
	return err == nil
}

// portOf is ":49670" for "127.0.0.1:49670" or "[::1]:49670"; the text itself otherwise.
func portOf(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return fmt.Sprintf(":%d", ap.Port())
	}
	return addr
}

// acceptQueuePicture draws a listener's queue as three clients join it and one accept()
// leaves (when q is not nil), and listeners of backlog 0, 1 and 2 filled to backlog+1 with
// the next client left out (fills).
func acceptQueuePicture(q *evidence.QueueSeen, clients []evidence.ClientState, fills []evidence.Fill) ([]byte, error) {
	if q == nil && len(fills) == 0 {
		return nil, fmt.Errorf("no backlog_queue or backlog_fill evidence")
	}
	const x0, slot, gap = 40, 64, 6
	h := 50
	if q != nil {
		h += 170
	}
	if len(fills) > 0 {
		h += 70 + len(fills)*62 + 20
	}
	s := newSVG(860, h, "The accept queue: connections the kernel has finished, waiting for accept()")
	s.text(430, 28, "middle", `font-weight="bold" font-size="16"`, "The accept queue holds backlog+1 finished handshakes")
	y := 50
	if q != nil {
		s.text(x0, y+16, "start", `font-weight="bold"`,
			fmt.Sprintf("backlog.queue: listen(fd, %d), %d clients connect, no accept() yet", q.Backlog, len(q.Lens)-1))
		s.text(820, y+16, "end", `font-size="13" fill="#555555"`,
			fmt.Sprintf("limit %d (TCP_INFO), somaxconn %d", q.Max, q.Somaxconn))
		queued := 0
		if n := len(q.Lens); n > 0 {
			queued = int(q.Lens[n-1])
		}
		slots := min(int(q.Max)+1, 12)
		for i := range slots {
			x := x0 + i*(slot+gap)
			if i < queued {
				s.box(x, y+30, slot, 40, colSame)
				label := fmt.Sprintf("#%d", i+1)
				if i < len(clients) {
					label = portOf(clients[i].Client)
				}
				s.text(x+slot/2, y+55, "middle", `font-family="monospace" font-size="13"`, label)
				continue
			}
			fmt.Fprintf(s, `<rect x="%d" y="%d" width="%d" height="40" rx="6" fill="none" stroke="#9e9e9e" stroke-width="1.5" stroke-dasharray="4 3"/>`+"\n", x, y+30, slot)
		}
		if slots == int(q.Max)+1 {
			x := x0 + int(q.Max)*(slot+gap)
			s.text(x+slot/2, y+84, "middle", `font-size="12" fill="#555555"`, "+1")
		}
		s.text(x0, y+106, "start", `font-size="13"`, "oldest first: accept() takes the leftmost; each dashed slot is room for one more, up to the limit and one more (+1)")
		lens := make([]string, len(q.Lens))
		for i, n := range q.Lens {
			lens[i] = fmt.Sprint(n)
		}
		s.text(x0, y+130, "start", "", fmt.Sprintf("queue length (tcpi_unacked) after each connect(): %s", strings.Join(lens, " → ")))
		if q.Accepted != "" {
			s.text(x0, y+152, "start", "", fmt.Sprintf("one accept() returned %s, the first to connect; the queue went down to %d", q.Accepted, q.AfterAccept))
		}
		y += 170
	}
	if len(fills) > 0 {
		if q != nil {
			fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="820" y2="%d" stroke="#9e9e9e" stroke-width="1"/>`+"\n", x0, y, y)
		}
		s.text(x0, y+26, "start", `font-weight="bold"`, "backlog.size: each queue filled until a client could not join it")
		s.text(820, y+26, "end", `font-size="13" fill="#555555"`, "blue: ESTABLISHED, queued; orange: the next client")
		y += 46
		for _, f := range fills {
			s.text(x0, y+26, "start", `font-family="monospace"`, fmt.Sprintf("listen(fd, %d)", f.Backlog))
			s.text(x0, y+44, "start", `font-size="12" fill="#555555"`, fmt.Sprintf("limit %d, holds %d", f.Max, f.Queued))
			bx := x0 + 140
			shown := min(len(f.Completed), 6)
			for i := range shown {
				x := bx + i*(slot+gap)
				s.box(x, y+8, slot, 36, colSame)
				s.text(x+slot/2, y+31, "middle", `font-family="monospace" font-size="13"`, portOf(f.Completed[i].Client))
				if i == int(f.Max) && int(f.Queued) == int(f.Max)+1 {
					s.text(x+slot/2, y+58, "middle", `font-size="12" fill="#555555"`, "+1")
				}
			}
			x := bx + shown*(slot+gap)
			if shown < len(f.Completed) {
				s.text(x+10, y+31, "start", "", fmt.Sprintf("… %d in all", len(f.Completed)))
				x += 90
			}
			x += 24
			if f.Next.Client != "" {
				s.box(x, y+8, slot, 36, colDiff)
				s.text(x+slot/2, y+31, "middle", `font-family="monospace" font-size="13"`, portOf(f.Next.Client))
				what := fmt.Sprintf("%s: its SYN dropped", f.Next.State)
				if f.Next.Errno != "" {
					what += fmt.Sprintf("; %s after %.2f s", f.Next.Errno, float64(f.Next.AfterUS)/1e6)
				}
				s.text(x+slot+10, y+31, "start", `font-size="13"`, what)
			}
			y += 62
		}
	}
	return s.bytes(), nil
}

// overflowPicture draws one connect() to a full queue as a sequence diagram between client
// and server, in ms after the client's first SYN: the SYN dropped, accept() making room,
// the retransmitted SYN completing the handshake.
func overflowPicture(o evidence.Overflow, packets []evidence.OverflowPacket, counters *evidence.CountersSeen) ([]byte, error) {
	first := -1
	for i, p := range packets {
		if p.From == "client" && p.Flags == "SYN" {
			first = i
			break
		}
	}
	if first < 0 {
		return nil, fmt.Errorf("no SYN from the client among %d packets", len(packets))
	}
	t0 := packets[first].AtUS
	var after []evidence.OverflowPacket
	for _, p := range packets[first+1:] {
		if p.Phase == "after accept" && (p.From == "client" || p.Dst == o.Client) {
			after = append(after, p)
		}
	}
	if len(after) == 0 {
		return nil, fmt.Errorf("no packets of the client after accept()")
	}

	const cx, sx, top, step = 230, 650, 110, 46
	rows := 4 + len(after)
	h := top + rows*step + 40 + 82
	s := newSVG(860, h, "A connect() to a full accept queue, over time: the SYN dropped, then sent again")
	s.text(430, 28, "middle", `font-weight="bold" font-size="16"`, "A full queue drops the SYN; the client's timer sends it again")
	s.text(cx, 64, "middle", `font-weight="bold"`, "client "+o.Client)
	s.text(sx, 64, "middle", `font-weight="bold"`, "server "+o.Listener)
	s.text(60, 64, "middle", `font-size="12" fill="#555555"`, "ms")
	s.lifeline(cx, 76, h-86)
	s.lifeline(sx, 76, h-86)
	s.arrowheads(8, arrowhead{"arrow", "#1565c0"})
	ms := func(us int64) string { return fmt.Sprintf("%.2f", float64(us)/1e3) }
	y := top - 16

	// The queue, full before the client came.
	s.box(sx-150, y-14, 300, 30, colSame)
	s.text(sx, y+6, "middle", `font-size="13"`, fmt.Sprintf("queue full: holds %d (the filler), limit %d", o.QueueLen, o.QueueMax))
	y += step

	// The first SYN, dropped: an arrow that stops short, and a cross.
	mid := sx - 60
	fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#e65100" stroke-width="2" stroke-dasharray="6 4"/>`+"\n", cx, y, mid, y+14)
	fmt.Fprintf(s, `<path d="M%d,%d l12,12 M%d,%d l-12,12" stroke="#c62828" stroke-width="3"/>`+"\n", mid-6, y+8, mid+6, y+8)
	dropped := "SYN  dropped: no SYN-ACK, no RST"
	s.text((cx+sx)/2, y-4, "middle", `font-family="monospace"`, dropped)
	s.text(60, y+12, "middle", `font-size="12" fill="#555555"`, ms(0))
	note := fmt.Sprintf("client %s", o.StateFull)
	if counters != nil && len(counters.Delta) > 0 {
		note = fmt.Sprintf("ListenOverflows +%d, ListenDrops +%d", counters.Delta["ListenOverflows"], counters.Delta["ListenDrops"])
	}
	s.text((cx+sx)/2, y+30, "middle", `font-size="12" fill="#555555"`, note)
	y += step

	// accept() on the server: room, and still nothing said to the client.
	s.box(sx-110, y-10, 220, 30, colDiff)
	s.text(sx, y+10, "middle", `font-family="monospace" font-weight="bold"`, "accept() takes the filler")
	s.text(60, y+10, "middle", `font-size="12" fill="#555555"`, ms(o.AcceptAtUS))
	s.text(cx-12, y+10, "end", `font-size="12" fill="#555555"`, "still "+o.StateAccepted)
	y += step

	// The wait: the client's retransmission timer.
	fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9e9e9e" stroke-width="1.5" stroke-dasharray="2 5"/>`+"\n", cx-60, y, sx+60, y)
	s.text((cx+sx)/2, y-6, "middle", `font-size="13"`, fmt.Sprintf("the client waits out its retransmission timer (tcpi_rto %.0f ms)", float64(o.RTOUS)/1e3))
	y += step - 10

	for _, p := range after {
		x1, x2 := cx, sx
		if p.From != "client" {
			x1, x2 = sx, cx
		}
		fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#1565c0" stroke-width="2" marker-end="url(#arrow)"/>`+"\n", x1, y, x2, y+14)
		label := p.Flags
		if p.From == "client" && p.Flags == "SYN" {
			label = "SYN  (again: the same SYN)"
		}
		s.text((cx+sx)/2, y-4, "middle", `font-family="monospace"`, label)
		s.text(60, y+12, "middle", `font-size="12" fill="#555555"`, ms(p.AtUS-t0))
		y += step
	}

	s.box(cx-100, y-12, 200, 30, colSame)
	s.text(cx, y+8, "middle", `font-family="monospace" font-weight="bold"`, "connect() returns")
	s.text(60, y+8, "middle", `font-size="12" fill="#555555"`, ms(o.EstablishedUS))
	s.text(cx-100, y+36, "start", `font-size="12" fill="#555555"`,
		fmt.Sprintf("%s, %d retransmission; the next accept() returns %s", o.StateAfter, o.Retransmits, portOf(o.AcceptedSecond)))
	// The rows are in order, one a step: the times say how far apart they are.
	for i, line := range []string{
		"Not to scale: one row per event, in order; the ms at the left say when.",
		"Packets: lo's timestamps, in ms after the client's first SYN.",
		"accept() and connect() returning: the process's clock, in ms after connect() began.",
	} {
		s.text(40, h-50+i*18, "start", `font-size="13" fill="#555555"`, line)
	}
	return s.bytes(), nil
}
