package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"portproof/specs/evidence"
)

// Chapter 8's picture, drawn from the evidence ch08_queues_test.go records under
// evidence.EntryQueueDefer (an evidence.QueueDefer) and evidence.EntryQueueOverflow (an
// evidence.QueueOverflow per tcp_abort_on_overflow): the client's view and the server's, side
// by side, at each moment of a deferred handshake, and of one whose data meets a full accept
// queue.

// queuePanel is one handshake as the picture draws it, whichever proof recorded it.
type queuePanel struct {
	title    string
	client   string // the client's end: its segments are the arrows, the rest the fillers'
	listener string
	recv     string // the client's read after its data; "" where it made none
	rows     []queueRow
}

// queueRow is one row of a panel: a segment of the client's, or both sides' views.
type queueRow struct {
	at   time.Time
	seg  *evidence.Segment
	view *evidence.QueueView
	note string // beside a segment: what became of it
}

// queueRows keeps the client's own segments and the views, in time order; the fillers'
// segments become one row, where they happened.
func queueRows(client string, fillers int, packets []evidence.Segment, views []evidence.QueueView,
	notes func(evidence.Segment) string) []queueRow {
	var rows []queueRow
	seen := false
	for i := range packets {
		p := packets[i]
		if p.Src.String() != client && p.Dst.String() != client {
			if !seen {
				rows = append(rows, queueRow{at: p.Time, note: fmt.Sprintf(
					"%d fillers connect and send a byte each: the accept queue fills", fillers)})
				seen = true
			}
			continue
		}
		rows = append(rows, queueRow{at: p.Time, seg: &packets[i], note: notes(p)})
	}
	for i := range views {
		rows = append(rows, queueRow{at: views[i].At, view: &views[i]})
	}
	slices.SortStableFunc(rows, func(a, b queueRow) int { return a.at.Compare(b.at) })
	return rows
}

// queuesPicture draws the deferred handshake, then each overflow, as panels of rows.
func queuesPicture(deferred *evidence.QueueDefer, overflows []evidence.QueueOverflow) ([]byte, error) {
	var panels []queuePanel
	if deferred != nil {
		st := *deferred
		acks := 0
		rows := queueRows(st.Client, 0, st.Packets, st.Views, func(p evidence.Segment) string {
			switch {
			case p.Src.String() == st.Client && p.Flags == "ACK" && acks == 0:
				acks++
				return fmt.Sprintf("dropped: deferred (TCPDeferAcceptDrop +%d)", st.Counters["TCPDeferAcceptDrop"])
			case p.Src.String() == st.Client && p.Len > 0:
				return fmt.Sprintf("%d bytes: they complete the connection", p.Len)
			}
			return ""
		})
		// No read of the client's: its data completed the connection, and the server read it.
		panels = append(panels, queuePanel{"TCP_DEFER_ACCEPT: connect() returns, the server waits for data",
			st.Client, st.Listener, "", rows})
	}
	for _, o := range overflows {
		st := o
		title := "tcp_abort_on_overflow 0: the client's data meets a full queue, and is dropped"
		if st.AbortOnOverflow == "1" {
			title = "tcp_abort_on_overflow 1: the client's data meets a full queue, and is reset"
		}
		acks := 0
		rows := queueRows(st.Client, len(st.Fillers), st.Packets, st.Views, func(p evidence.Segment) string {
			switch {
			case p.Src.String() == st.Client && p.Flags == "ACK" && acks == 0:
				acks++
				return "dropped: the server defers"
			case p.Src.String() == st.Client && p.Len > 0:
				return fmt.Sprintf("%d bytes: no room (ListenOverflows +%d)", p.Len, st.Counters["ListenOverflows"])
			case strings.Contains(p.Flags, "RST"):
				return fmt.Sprintf("embryonic_reset (EmbryonicRsts +%d)", st.Counters["EmbryonicRsts"])
			}
			return ""
		})
		panels = append(panels, queuePanel{title, st.Client, st.Listener, st.Recv, rows})
	}
	if len(panels) == 0 {
		return nil, fmt.Errorf("no %s or %s evidence", evidence.EntryQueueDefer, evidence.EntryQueueOverflow)
	}
	const cx, sx, step, viewH = 240, 620, 30, 52
	h := 50
	for _, p := range panels {
		h += 90
		for _, r := range p.rows {
			if r.view != nil {
				h += viewH + 10
			} else {
				h += step
			}
		}
	}
	s := newSVG(860, h, "The client's view and the server's, side by side: a deferred handshake, "+
		"and the client's data meeting a full accept queue")
	s.text(430, 28, "middle", `font-weight="bold" font-size="16"`, "Connected, says the client; a request, says the server")
	s.arrowheads(8, arrowhead{"arrow", "#1565c0"}, arrowhead{"arrowred", "#c62828"})
	y := 56
	for _, p := range panels {
		s.text(430, y, "middle", `font-weight="bold"`, p.title)
		s.text(cx, y+44, "middle", `font-weight="bold"`, "client "+p.client)
		s.text(sx, y+44, "middle", `font-weight="bold"`, "server "+p.listener)
		s.text(cx/2, y+24, "middle", `font-size="12" fill="#555555"`, "the client's kernel says")
		s.text((sx+860)/2, y+24, "middle", `font-size="12" fill="#555555"`, "the server's kernel says")
		y += 70
		top := y - 12
		for i, r := range p.rows {
			switch {
			case r.view != nil:
				v := r.view
				last := i == len(p.rows)-1 || !slices.ContainsFunc(p.rows[i+1:], func(q queueRow) bool { return q.view != nil })
				unacked := "nothing unacknowledged"
				if v.Unacked > 0 {
					unacked = fmt.Sprintf("%d segment unacknowledged", v.Unacked)
				}
				client := []string{v.Client + " (TCP_INFO)", unacked}
				if last && p.recv != "" {
					client[1] = "read(): " + p.recv
					if v.Unacked > 0 {
						client[1] = unacked + "; " + client[1]
					}
				}
				server := "nothing for it"
				if v.Server != "" {
					server = v.Server
					if v.Server == "SYN_RECV" {
						server = "a request, SYN_RECV"
					}
				}
				queue := fmt.Sprintf("accept queue %d (limit %d)", v.Queue, v.QueueMax)
				if v.Queue > v.QueueMax {
					queue += ": full"
				}
				s.box(12, y-4, cx-24, viewH, colSame)
				s.text(cx/2, y+16, "middle", `font-family="monospace" font-size="12" font-weight="bold"`, client[0])
				s.text(cx/2, y+36, "middle", `font-size="12"`, client[1])
				s.box(sx+12, y-4, 860-sx-24, viewH, colDiff)
				s.text((sx+860)/2, y+16, "middle", `font-family="monospace" font-size="12" font-weight="bold"`, server)
				s.text((sx+860)/2, y+36, "middle", `font-size="12"`, queue)
				s.text((cx+sx)/2, y+26, "middle", `font-size="12" fill="#555555" font-style="italic"`, v.Moment)
				y += viewH + 10
			case r.seg == nil:
				s.text((cx+sx)/2, y+4, "middle", `font-size="12" fill="#555555"`, r.note)
				y += step
			default:
				g := r.seg
				x1, x2 := cx, sx
				if g.Src.String() != p.client {
					x1, x2 = sx, cx
				}
				color, marker, dash := "#1565c0", "arrow", ""
				if strings.Contains(g.Flags, "RST") {
					color, marker = "#c62828", "arrowred"
				}
				if strings.HasPrefix(r.note, "dropped") || strings.Contains(r.note, "no room") {
					dash = ` stroke-dasharray="6 4"`
				}
				fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s marker-end="url(#%s)"/>`+"\n",
					x1, y-4, x2, y+8, color, dash, marker)
				label := g.Flags
				if r.note != "" {
					label += "  " + r.note
				}
				s.text((cx+sx)/2, y-8, "middle", `font-family="monospace" font-size="12"`, label)
				y += step
			}
		}
		s.lifeline(cx, top, y-10)
		s.lifeline(sx, top, y-10)
		y += 20
	}
	return s.bytes(), nil
}

// queuesPictures draws chapter 8's picture into pics, or its placeholder with the reason.
func queuesPictures(byID map[string]proof, pics map[string][]byte, missing notes) {
	const name = "handshake-views.svg"
	p := byID["queue.synrecv"]
	var deferred *evidence.QueueDefer
	var d evidence.QueueDefer
	if decodeFirst(p, evidence.EntryQueueDefer, &d) {
		deferred = &d
	}
	// Both overflows come from one spec, IPv4 first: the picture compares them.
	var overflows []evidence.QueueOverflow
	for _, sp := range p.passed() {
		if len(overflows) > 0 {
			break
		}
		for _, e := range sp.entries(evidence.EntryQueueOverflow) {
			var o evidence.QueueOverflow
			if e.decode(&o) == nil {
				overflows = append(overflows, o)
			}
		}
	}
	b, err := queuesPicture(deferred, overflows)
	if err == nil {
		pics[name] = b
		return
	}
	why := "queue.synrecv recorded no handshake in this run (" + err.Error() + "): " +
		"it needs a private network namespace, which root or an unprivileged user namespace gives."
	pics[name], missing[name] = placeholder("A deferred handshake, from both sides", why), why
}
