package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"portproof/specs/evidence"
)

// Chapter 7's picture, drawn from the evidence ch07_closing_test.go records under
// evidence.EntryCloseTimeWait (an evidence.TimeWait): one connection closed by its server
// first, every call, segment and state on one clock, then a second one closed with
// SO_LINGER {1, 0}.

// closeEvent is one row of the timeline: a call, a segment or a state, at a time.
type closeEvent struct {
	at   time.Time
	kind string // "call", "segment", "state"
	who  string // the lane: "server" or "client"; a segment's sender
	text string
	note string // beside it, smaller
	// dropped marks a segment that the client's socket filter took before TCP saw it.
	dropped bool
}

// closeEvents merges a connection's calls, segments (those after the handshake) and states
// in time order.
func closeEvents(st evidence.CloseEnds, packets []evidence.Segment) []closeEvent {
	var evs []closeEvent
	var filtered [2]time.Time // SO_ATTACH_FILTER, SO_DETACH_FILTER on the client
	for _, c := range st.Calls {
		switch c.Call {
		case "SO_ATTACH_FILTER":
			filtered[0] = c.At
			evs = append(evs, closeEvent{at: c.At, kind: "call", who: c.Who, text: "filter: drop all",
				note: "SO_ATTACH_FILTER, so LAST_ACK lasts"})
			continue
		case "SO_DETACH_FILTER":
			filtered[1] = c.At
			evs = append(evs, closeEvent{at: c.At, kind: "call", who: c.Who, text: "filter removed",
				note: "SO_DETACH_FILTER"})
			continue
		}
		text := c.Call + "()"
		if strings.Contains(c.Call, "(") {
			text = c.Call
		}
		if c.Result != "" && c.Result != "0" {
			text += " = " + c.Result
		}
		evs = append(evs, closeEvent{at: c.At, kind: "call", who: c.Who, text: text})
	}
	handshake := 0
	for _, p := range packets {
		if handshake < 3 && !strings.ContainsAny(p.Flags, "FR") && p.Len == 0 {
			handshake++ // SYN, SYN-ACK, ACK: before the story
			continue
		}
		who := "client"
		if p.Src.String() == st.Server {
			who = "server"
		}
		e := closeEvent{at: p.Time, kind: "segment", who: who, text: p.Flags}
		e.dropped = who == "server" && !filtered[0].IsZero() && p.Time.After(filtered[0]) &&
			(filtered[1].IsZero() || p.Time.Before(filtered[1]))
		evs = append(evs, e)
	}
	for _, s := range st.States {
		note := s.From
		if s.TimerLeftMS > 0 {
			note += fmt.Sprintf(", timer %.2f s left", s.TimerLeftMS/1e3)
		}
		evs = append(evs, closeEvent{at: s.At, kind: "state", who: s.Who, text: s.State, note: note})
	}
	slices.SortStableFunc(evs, func(a, b closeEvent) int { return a.at.Compare(b.at) })
	return evs
}

// closePicture draws the close of one connection, its server first, as a sequence diagram
// between the server (left) and the client (right), then the SO_LINGER {1, 0} variant.
func closePicture(tw evidence.TimeWait) ([]byte, error) {
	main := closeEvents(tw.CloseEnds, tw.Packets)
	reset := closeEvents(tw.Linger.CloseEnds, tw.Linger.Packets)
	if len(main) == 0 || len(tw.Packets) == 0 {
		return nil, fmt.Errorf("no calls or segments in %s", evidence.EntryCloseTimeWait)
	}
	const sx, cx, step = 200, 660, 30
	h := 318 + (len(main)+len(reset))*step // the rows, and the headings and boxes below
	s := newSVG(860, h, "Closing a connection: FIN each way, TIME_WAIT on the side that closed first; "+
		"and the same close with SO_LINGER {1, 0}: an RST, and nothing kept")
	s.text(430, 28, "middle", `font-weight="bold" font-size="16"`, "Who closes first keeps TIME_WAIT; an RST keeps nothing")
	s.arrowheads(8, arrowhead{"arrow", "#1565c0"}, arrowhead{"arrowred", "#c62828"})

	y := 60
	lanes := func(title string, n int) {
		s.text(430, y, "middle", `font-weight="bold"`, title)
		s.text(sx, y+24, "middle", `font-weight="bold"`, "server "+tw.Server)
		s.text(cx, y+24, "middle", `font-weight="bold"`, "client "+tw.Client)
		s.text(40, y+24, "middle", `font-size="12" fill="#555555"`, "ms")
		bottom := y + 36 + n*step
		s.lifeline(sx, y+32, bottom)
		s.lifeline(cx, y+32, bottom)
		y += 52
	}
	draw := func(evs []closeEvent) {
		t0 := evs[0].at
		for _, e := range evs {
			x := sx
			if e.who == "client" {
				x = cx
			}
			s.text(40, y+4, "middle", `font-size="12" fill="#555555"`, fmt.Sprintf("%.2f", float64(e.at.Sub(t0).Microseconds())/1e3))
			switch e.kind {
			case "segment":
				x1, x2 := sx, cx
				if e.who == "client" {
					x1, x2 = cx, sx
				}
				color, marker, dash := "#1565c0", "arrow", ""
				if strings.Contains(e.text, "RST") {
					color, marker = "#c62828", "arrowred"
				}
				label := e.text
				if e.dropped {
					dash = ` stroke-dasharray="6 4"`
					label += "  (dropped by the client's filter)"
				}
				fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s marker-end="url(#%s)"/>`+"\n",
					x1, y-6, x2, y+8, color, dash, marker)
				s.text((sx+cx)/2, y-8, "middle", `font-family="monospace" font-size="13"`, label)
			case "call":
				s.box(x-85, y-12, 170, 22, colDiff)
				s.text(x, y+4, "middle", `font-family="monospace" font-size="12"`, e.text)
				if e.note != "" {
					s.text(closeNoteX(x, sx), y+4, closeNoteAnchor(x, sx), `font-size="11" fill="#555555"`, e.note)
				}
			case "state":
				s.box(x-70, y-12, 140, 22, colSame)
				s.text(x, y+4, "middle", `font-family="monospace" font-size="12" font-weight="bold"`, e.text)
				s.text(closeNoteX(x, sx), y+4, closeNoteAnchor(x, sx), `font-size="11" fill="#555555"`, e.note)
			}
			y += step
		}
	}

	lanes("The server closes first, then the client (tcp_fin_timeout "+tw.FinTimeout+" s in the sandbox)", len(main))
	draw(main)
	y += 6
	s.box(60, y, 740, 48, colMuted)
	s.text(430, y+20, "middle", "", fmt.Sprintf("Once both descriptors are closed, the kernel keeps: the server's end, %s; the client's, %s.",
		orNothing(tw.Left["server"]), orNothing(tw.Left["client"])))
	s.text(430, y+40, "middle", `font-size="12" fill="#555555"`, "The side that closed first holds the 4-tuple, with no descriptor, until its timer ends.")
	y += 92

	if len(reset) > 0 {
		lanes("Another connection: the server sets SO_LINGER {1, 0} and closes", len(reset))
		draw(reset)
		y += 6
		s.box(60, y, 740, 30, colMuted)
		s.text(430, y+20, "middle", "", fmt.Sprintf("Kept afterwards: the server's end, %s; the client's, %s. No TIME_WAIT.",
			orNothing(tw.Linger.Left["server"]), orNothing(tw.Linger.Left["client"])))
	}
	return s.bytes(), nil
}

// closeNoteX and closeNoteAnchor place a note between the lanes, where a row with no
// segment has room: right of the server's box, left of the client's.
func closeNoteX(x, sx int) int {
	if x == sx {
		return x + 92
	}
	return x - 92
}

func closeNoteAnchor(x, sx int) string {
	if x == sx {
		return "start"
	}
	return "end"
}

func orNothing(state string) string {
	if state == "" {
		return "nothing"
	}
	return state
}

// closingPictures draws chapter 7's picture into pics, or its placeholder with the reason.
func closingPictures(byID map[string]proof, pics map[string][]byte, missing notes) {
	const name = "close-timeline.svg"
	b, err := fromSpecs(byID["close.timewait"], evidence.EntryCloseTimeWait, func(e reportEntry) ([]byte, error) {
		var tw evidence.TimeWait
		if err := e.decode(&tw); err != nil {
			return nil, err
		}
		return closePicture(tw)
	})
	if err == nil {
		pics[name] = b
		return
	}
	why := "close.timewait recorded no close in this run (" + err.Error() + "): " +
		"it needs a private network namespace, which root or an unprivileged user namespace gives."
	pics[name], missing[name] = placeholder("Closing a connection, call by call", why), why
}
