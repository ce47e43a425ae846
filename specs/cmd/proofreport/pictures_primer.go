package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"portproof/specs/evidence"
)

// The primer's pictures (chapters/primer.md): the handshake and the two ways a connection
// ends, drawn from what chapter 5's proofs captured on the reader's loopback, and the states
// a connection goes through, with those the reader's proofs read from the kernel marked.
// Chapter 5's evidence is read as its specs wrote it: evidence.Timeline (EntryPackets),
// evidence.TimelineCall (EntrySyscalls), evidence.SocketState (EntryTCPStates).

// primerPictures adds the primer's pictures to pics. A picture whose evidence this run did
// not produce is a placeholder that says why, so that the primer never points nowhere.
func primerPictures(byID map[string]proof, ps []proof, pics map[string][]byte) {
	before := byID["handshake.before-accept"]
	if b, err := primerHandshakePicture(before); err == nil {
		pics["primer-handshake.svg"] = b
	} else {
		pics["primer-handshake.svg"] = placeholder("The three-way handshake on your loopback",
			"handshake.before-accept captured no handshake in this run ("+err.Error()+").")
	}
	if b, err := primerClosePicture(byID["handshake.shed"]); err == nil {
		pics["primer-close.svg"] = b
	} else {
		pics["primer-close.svg"] = placeholder("FIN and RST on your loopback",
			"handshake.shed captured no FIN and no RST in this run ("+err.Error()+").")
	}
	pics["primer-states.svg"] = primerStatesPicture(primerStatesSeen(ps))
}

// primerTimelines are the spec's evidence.EntryPackets entries that decode as timelines.
func primerTimelines(s specReport) []evidence.Timeline {
	var out []evidence.Timeline
	for _, e := range s.entries(evidence.EntryPackets) {
		var t evidence.Timeline
		if e.decode(&t) == nil && len(t.Packets) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// primerFlags finds, in order, a packet with each of flags, and returns them.
func primerFlags(pkts []evidence.TimelinePacket, flags ...string) ([]evidence.TimelinePacket, bool) {
	var out []evidence.TimelinePacket
	i := 0
	for _, f := range flags {
		for i < len(pkts) && pkts[i].Flags != f {
			i++
		}
		if i == len(pkts) {
			return nil, false
		}
		out = append(out, pkts[i])
		i++
	}
	return out, true
}

// The pictures are as wide as a chapter's text at 1280 px, so that they are shown at their
// own size, never shrunk: the client's lifeline on the left, the server's on the right.
const (
	primerW      = 700
	primerClient = 200
	primerServer = 500
)

func primerArrowDefs(s *svg) {
	s.arrowheads(8, arrowhead{"pa", "#1565c0"}, arrowhead{"pf", "#2e7d32"}, arrowhead{"pr", "#c62828"},
		arrowhead{"pg", "#9e9e9e"})
}

// primerSegment draws a segment as an arrow from one lifeline at y to the other at y+drop,
// with its label above the middle.
func primerSegment(s *svg, fromX, toX, y, drop int, color, marker, label string) {
	fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" marker-end="url(#%s)"/>`+"\n",
		fromX, y, toX, y+drop, color, marker)
	s.text((fromX+toX)/2, y+drop/2-12, "middle", `font-family="monospace" font-size="13"`, label)
}

// primerSegmentLabelled draws a steep segment, its label on the arrow's middle over a white
// patch: beside a steep arrow a label would cross it.
func primerSegmentLabelled(s *svg, fromX, toX, y, drop int, label string) {
	fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#1565c0" stroke-width="2" marker-end="url(#pa)"/>`+"\n",
		fromX, y, toX, y+drop)
	w := 8*len(label) + 6 // 13 px monospace: about 8 px a character
	fmt.Fprintf(s, `<rect x="%d" y="%d" width="%d" height="18" fill="#ffffff"/>`+"\n", (fromX+toX)/2-w/2, y+drop/2-9, w)
	s.text((fromX+toX)/2, y+drop/2+5, "middle", `font-family="monospace" font-size="13"`, label)
}

func primerLifelines(s *svg, client, server string, top, bottom int) {
	s.text(primerClient, top-14, "middle", `font-weight="bold"`, "client "+client)
	s.text(primerServer, top-14, "middle", `font-weight="bold"`, "server "+server)
	for _, x := range []int{primerClient, primerServer} {
		s.lifeline(x, top, bottom)
	}
}

// primerHandshakePicture draws the SYN, SYN-ACK and ACK of handshake.before-accept's
// connection, with the states each end is in after each, and when connect() returned and
// accept() was called.
func primerHandshakePicture(p proof) ([]byte, error) {
	specs := p.passed()
	if len(specs) == 0 {
		return nil, fmt.Errorf("no passing spec")
	}
	s := specs[0]
	tls := primerTimelines(s)
	if len(tls) == 0 {
		return nil, fmt.Errorf("no packets")
	}
	hs, ok := primerFlags(tls[0].Packets, "SYN", "SYN,ACK", "ACK")
	if !ok {
		return nil, fmt.Errorf("no SYN, SYN-ACK and ACK among the packets")
	}
	calls := map[string]int64{}
	for _, e := range s.entries(evidence.EntrySyscalls) {
		var cs []evidence.TimelineCall
		if e.decode(&cs) == nil {
			for _, c := range cs {
				calls[c.Call] = c.AtUS
			}
		}
	}
	connectUS, haveConnect := calls["connect returned"]
	acceptUS, haveAccept := calls["accept4 called"]

	const top, step, drop = 110, 78, 34
	h := top + 3*step + 186
	sv := newSVG(primerW, h, "The three-way handshake of one connection, as lo carried it on the reader's machine")
	sv.text(primerW/2, 28, "middle", `font-weight="bold" font-size="16"`, "The three-way handshake, as your kernel sent it")
	sv.text(primerW/2, 50, "middle", `font-size="13" fill="#555555"`,
		"one connection of the proof handshake.before-accept (chapter 5), captured on lo")
	primerArrowDefs(sv)
	primerLifelines(sv, hs[0].Src, hs[0].Dst, top, h-60)
	state := func(x, y int, anchor, name, note string) {
		sv.text(x, y, anchor, `font-family="monospace" font-weight="bold" fill="#e65100"`, name)
		if note != "" {
			sv.text(x, y+17, anchor, `font-size="12" fill="#555555"`, note)
		}
	}
	left, right := primerClient-14, primerServer+14
	state(right, top+4, "start", "LISTEN", "the listener")
	names := []string{"SYN", "SYN-ACK", "ACK"}
	for i, pk := range hs {
		y := top + 24 + i*step
		from, to := primerClient, primerServer
		if pk.From == "server" {
			from, to = primerServer, primerClient
		}
		label := fmt.Sprintf("%s  seq %d", names[i], pk.Seq)
		if strings.Contains(pk.Flags, "ACK") {
			label += fmt.Sprintf(", ack %d", pk.Ack)
		}
		primerSegment(sv, from, to, y, drop, "#1565c0", "pa", label)
		sv.text(from+(to-from)/2, y+drop/2+22, "middle", `font-size="12" fill="#555555"`, fmt.Sprintf("at %d µs", pk.AtUS))
		switch i {
		case 0:
			state(left, y+6, "end", "SYN_SENT", "connect() sent a SYN")
			state(right, y+drop+6, "start", "SYN_RECV", "in the SYN queue")
		case 1:
			state(left, y+drop+6, "end", "ESTABLISHED", "once its ACK is out")
		case 2:
			state(right, y+drop+6, "start", "ESTABLISHED", "a new socket, queued")
		}
	}
	// After the ACK: connect() returns on the client, and later accept() is called.
	mark := func(x, y int, anchor, what string, us int64) {
		sv.text(x, y, anchor, `font-family="monospace" font-weight="bold"`, what)
		sv.text(x, y+17, anchor, `font-size="12" fill="#555555"`, fmt.Sprintf("at %d µs", us))
	}
	last := top + 24 + 2*step + drop
	if haveConnect {
		mark(left, last+8, "end", "connect() returned 0", connectUS)
	}
	if haveAccept {
		mark(right, last+56, "start", "accept() called", acceptUS)
	}
	for i, line := range []string{
		"Rows evenly spaced, not to scale: chapter 5 draws it to scale.",
		"Times: lo's timestamps, after the SYN. Sequence numbers counted from each",
		"side's first, as tcpdump shows them: a SYN takes up one.",
	} {
		sv.text(primerW/2, h-48+i*18, "middle", `font-size="12" fill="#555555"`, line)
	}
	return sv.bytes(), nil
}

// primerClosePicture draws, side by side, the end of two of handshake.shed's connections:
// one the server closed with FIN, one with RST, and what each client then read.
func primerClosePicture(p proof) ([]byte, error) {
	specs := p.passed()
	if len(specs) == 0 {
		return nil, fmt.Errorf("no passing spec")
	}
	s := specs[0]
	var fin, rst []evidence.TimelinePacket
	var rstClient string
	for _, t := range primerTimelines(s) {
		for _, pk := range t.Packets {
			if pk.From != "server" {
				continue
			}
			switch {
			case strings.Contains(pk.Flags, "FIN") && fin == nil:
				fin = t.Packets
			case strings.Contains(pk.Flags, "RST") && rst == nil:
				rst, rstClient = t.Packets, pk.Dst
			}
		}
	}
	if fin == nil || rst == nil {
		return nil, fmt.Errorf("want a connection ended by the server's FIN and one by its RST")
	}
	var finState, rstState, rstErrno string
	for _, e := range s.entries(evidence.EntryTCPStates) {
		var st []evidence.SocketState
		if e.decode(&st) != nil {
			continue
		}
		for _, x := range st {
			switch {
			case strings.Contains(x.Socket, "end-of-stream"):
				finState = x.State
			case strings.Contains(x.Socket, "ECONNRESET") || strings.Contains(x.Socket, "SO_LINGER"):
				rstState = x.State
			}
		}
	}
	for _, e := range s.entries(evidence.EntryErrno) {
		var x evidence.ErrnoSeen
		if e.decode(&x) == nil && x.Local == rstClient {
			rstErrno = x.Errno
		}
	}

	const top, step, drop = 120, 40, 20
	h := top + 4*step + 136
	sv := newSVG(primerW, h, "How a connection ends: the server's FIN, and its RST, as lo carried them on the reader's machine")
	sv.text(primerW/2, 28, "middle", `font-weight="bold" font-size="16"`, "How a connection ends: FIN or RST, as your kernel sent them")
	sv.text(primerW/2, 50, "middle", `font-size="13" fill="#555555"`,
		"two connections of the proof handshake.shed (chapter 5), captured on lo")
	primerArrowDefs(sv)
	panel := func(x0 int, title string, pkts []evidence.TimelinePacket, flag, color, marker string, read, state string) {
		cx, sx := x0+40, x0+300
		sv.text((cx+sx)/2, top-48, "middle", `font-weight="bold" fill="`+color+`"`, title)
		sv.text(cx, top-14, "middle", `font-weight="bold"`, "client")
		sv.text(sx, top-14, "middle", `font-weight="bold"`, "server")
		row := 0
		for _, pk := range pkts {
			y := top + 10 + row*step
			from, to := cx, sx
			if pk.From == "server" {
				from, to = sx, cx
			}
			c, m := "#9e9e9e", "pg"
			label := pk.Flags
			if strings.Contains(pk.Flags, flag) {
				c, m = color, marker
				label = fmt.Sprintf("%s  at %d µs", pk.Flags, pk.AtUS)
			}
			primerSegment(sv, from, to, y, drop, c, m, label)
			row++
			if strings.Contains(pk.Flags, flag) {
				break
			}
		}
		bottom := top + row*step + 6
		for _, x := range []int{cx, sx} {
			sv.lifeline(x, top, bottom)
		}
		if read != "" {
			sv.text(cx-30, bottom+26, "start", `font-family="monospace" font-weight="bold"`, read)
		}
		if state != "" {
			sv.text(cx-30, bottom+48, "start", `font-size="13"`, "and the client's socket is in")
			sv.text(cx+150, bottom+48, "start", `font-family="monospace" font-weight="bold" fill="#e65100"`, state)
		}
	}
	panel(10, "close(): FIN, an orderly end", fin, "FIN", "#2e7d32", "pf", "read() returns 0: end-of-stream", finState)
	rstRead := "read() fails"
	if rstErrno != "" {
		rstRead += " with " + rstErrno
	}
	panel(360, "SO_LINGER {1, 0}, close(): RST, an abort", rst, "RST", "#c62828", "pr", rstRead, rstState)
	fmt.Fprintf(sv, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#e0e0e0" stroke-width="2"/>`+"\n", primerW/2, top-60, primerW/2, h-52)
	sv.text(primerW/2, h-30, "middle", `font-size="12" fill="#555555"`,
		"Gray: the handshake before. Rows evenly spaced, not to scale;")
	sv.text(primerW/2, h-12, "middle", `font-size="12" fill="#555555"`,
		"times are lo's timestamps, after each connection's SYN.")
	return sv.bytes(), nil
}

// primerStates are the states of a connection's common path, as TCP_INFO names them
// (sock.TCPState), and the other spellings of each: ss(8)'s.
var primerStates = map[string][]string{
	"LISTEN":      {"LISTEN"},
	"SYN_SENT":    {"SYN_SENT", "SYN-SENT"},
	"SYN_RECV":    {"SYN_RECV", "SYN-RECV", "NEW_SYN_RECV"},
	"ESTABLISHED": {"ESTABLISHED", "ESTAB"},
	"FIN_WAIT1":   {"FIN_WAIT1", "FIN-WAIT-1"},
	"FIN_WAIT2":   {"FIN_WAIT2", "FIN-WAIT-2"},
	"CLOSE_WAIT":  {"CLOSE_WAIT", "CLOSE-WAIT"},
	"LAST_ACK":    {"LAST_ACK", "LAST-ACK"},
	"TIME_WAIT":   {"TIME_WAIT", "TIME-WAIT"},
}

// primerStatesSeen finds, for each state of the common path, the chapters whose passing
// proofs recorded a socket in it: a word of their evidence's strings that is the state's
// name as sock.TCPState or ss spells it ("ESTABLISHED", or "its connection in TIME_WAIT").
// The names are in capitals, which no other word of the evidence is.
func primerStatesSeen(ps []proof) map[string][]int {
	name := map[string]string{}
	for st, spellings := range primerStates {
		for _, sp := range spellings {
			name[sp] = st
		}
	}
	seen := map[string][]int{}
	for _, p := range ps {
		for _, s := range p.Specs {
			if s.State != "passed" {
				continue
			}
			for _, e := range s.ReportEntries {
				var v any
				if json.Unmarshal([]byte(e.Value.AsJSON), &v) != nil {
					continue
				}
				primerStrings(v, func(str string) {
					for _, word := range strings.FieldsFunc(str, primerNotInName) {
						if st, ok := name[word]; ok && !slices.Contains(seen[st], p.Chapter.Number) {
							seen[st] = append(seen[st], p.Chapter.Number)
						}
					}
				})
			}
		}
	}
	for st := range seen {
		slices.Sort(seen[st])
	}
	return seen
}

// primerNotInName tells the characters that end a state's name in a sentence.
func primerNotInName(r rune) bool {
	return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
}

// primerStrings calls f with every string in a decoded JSON value.
func primerStrings(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case []any:
		for _, y := range x {
			primerStrings(y, f)
		}
	case map[string]any:
		for _, y := range x {
			primerStrings(y, f)
		}
	}
}

// primerTransition is one change of state on one side of the common path: at a moment (a
// row of the picture), on an event, into a state.
type primerTransition struct {
	at    int    // the row
	event string // what made it: a call, or a segment that arrived
	state string // the state it leads to ("CLOSE": none, as TCP_INFO names it)
}

// primerStatesPicture draws RFC 9293's state diagram (section 3.3.2, figure 5) along its
// common path, the side that connects on the left and the side that listens on the right,
// each state as long as it lasts, with the segments that move both sides on. Either side may
// close first; the picture has the left one do it, and says so. The names are TCP_INFO's
// (sock.TCPState): CLOSE where the RFC writes CLOSED. States the reader's proofs recorded
// are marked with their chapters.
func primerStatesPicture(seen map[string][]int) []byte {
	client := []primerTransition{
		{1, "connect(): send SYN", "SYN_SENT"},
		{3, "SYN-ACK in: send ACK", "ESTABLISHED"},
		{5, "close() first: send FIN", "FIN_WAIT1"},
		{7, "ACK of the FIN in", "FIN_WAIT2"},
		{9, "FIN in: send ACK", "TIME_WAIT"},
		{11, "60 s later (Linux)", "CLOSE"},
	}
	server := []primerTransition{
		{0, "listen()", "LISTEN"},
		{2, "SYN in: send SYN-ACK", "SYN_RECV"},
		{4, "ACK in", "ESTABLISHED"},
		{6, "FIN in: send ACK", "CLOSE_WAIT"},
		{8, "close(): send FIN", "LAST_ACK"},
		{10, "ACK of the FIN in", "CLOSE"},
	}
	segments := []struct {
		from, to int // rows: sent, arrived
		toServer bool
		label    string
	}{
		{1, 2, true, "SYN"}, {2, 3, false, "SYN-ACK"}, {3, 4, true, "ACK"},
		{5, 6, true, "FIN"}, {6, 7, false, "ACK"}, {8, 9, false, "FIN"}, {9, 10, true, "ACK"},
	}
	const top, step, rows = 122, 42, 12
	const lx, rx, bw = 230, 470, 140 // the two columns' centres, and a state's width
	caption := []string{
		"Either side may close first: that side takes the left path from FIN_WAIT1 on, the other",
		"the right one from CLOSE_WAIT. In the primer's Example_fin the server closed first,",
		"so the client was left in CLOSE_WAIT. TIME_WAIT lasts 60 s on Linux (TCP_TIMEWAIT_LEN);",
		"RFC 9293 asks for 2 MSL, 4 minutes. On the server the listener stays in LISTEN:",
		"SYN_RECV is a request it holds, and ESTABLISHED a new socket, the one accept() returns.",
		"\"your run\": the chapters whose proofs read a socket in that state from your kernel.",
	}
	h := top + rows*step + 24 + 18*len(caption)
	sv := newSVG(primerW, h, "The states of a TCP connection along its common path, both sides, after RFC 9293's figure 5")
	w := primerW
	sv.text(w/2, 28, "middle", `font-weight="bold" font-size="16"`, "The states a connection goes through: the common path")
	sv.text(w/2, 50, "middle", `font-size="13" fill="#555555"`,
		"after RFC 9293, section 3.3.2 (figure 5), names as TCP_INFO spells them; time runs down")
	sv.text(lx, top-40, "middle", `font-weight="bold"`, "the side that connects")
	sv.text(lx, top-22, "middle", `font-size="13" fill="#555555"`, "and, here, closes first")
	sv.text(rx, top-40, "middle", `font-weight="bold"`, "the side that listens")
	sv.text(rx, top-22, "middle", `font-size="13" fill="#555555"`, "and, here, closes second")
	primerArrowDefs(sv)
	y := func(row int) int { return top + row*step }
	column := func(x int, ts []primerTransition, anchor string, labelX int, first string) {
		from, state := 0, first
		for i := 0; i <= len(ts); i++ {
			to := rows
			if i < len(ts) {
				to = ts[i].at
			}
			if to > from {
				style := colMuted
				if state != "CLOSE" {
					style = colSame
				}
				sv.box(x-bw/2, y(from)+3, bw, y(to)-y(from)-6, style)
				mid := (y(from) + y(to)) / 2
				marks := primerMarks(seen[state])
				name := mid + 5 - 7*len(marks) // the name and its marks, centred in the box
				sv.text(x, name, "middle", `font-family="monospace" font-weight="bold"`, state)
				for j, m := range marks {
					sv.text(x, name+16+14*j, "middle", `font-size="11" fill="#e65100"`, m)
				}
			}
			if i == len(ts) {
				break
			}
			sv.text(labelX, y(ts[i].at)+4, anchor, `font-size="13"`, ts[i].event)
			fmt.Fprintf(sv, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#616161" stroke-width="1" stroke-dasharray="3,3"/>`+"\n",
				min(labelX, x-bw/2), y(ts[i].at), max(labelX, x+bw/2), y(ts[i].at))
			from, state = ts[i].at, ts[i].state
		}
	}
	column(lx, client, "end", lx-bw/2-10, "CLOSE")
	column(rx, server, "start", rx+bw/2+10, "CLOSE")
	for _, sg := range segments {
		x1, x2 := lx+bw/2, rx-bw/2
		if !sg.toServer {
			x1, x2 = x2, x1
		}
		primerSegmentLabelled(sv, x1, x2, y(sg.from), y(sg.to)-y(sg.from), sg.label)
	}
	for i, line := range caption {
		sv.text(w/2, y(rows)+24+i*18, "middle", `font-size="12" fill="#555555"`, line)
	}
	return sv.bytes()
}

// primerMarks are the lines that mark a state with the chapters that read it: one line
// while it fits a state's box ("your run: ch. 4, 5"), else two ("your run:", "ch. 1, 2, 4-8").
func primerMarks(ch []int) []string {
	if len(ch) == 0 {
		return nil
	}
	chapters := primerChapters(ch)
	if one := "your run: " + chapters; len(one) <= 21 { // 11 px text: about 6 px a character
		return []string{one}
	}
	return []string{"your run:", chapters}
}

// primerChapters is "ch. 4" or "ch. 1, 2, 4-8": short, to fit in a state's box, with a run
// of three chapters or more written as its first and last.
func primerChapters(ch []int) string {
	var s []string
	for i := 0; i < len(ch); {
		j := i
		for j+1 < len(ch) && ch[j+1] == ch[j]+1 {
			j++
		}
		switch {
		case j-i >= 2:
			s = append(s, fmt.Sprintf("%d-%d", ch[i], ch[j]))
		case j > i:
			s = append(s, fmt.Sprint(ch[i]), fmt.Sprint(ch[j]))
		default:
			s = append(s, fmt.Sprint(ch[i]))
		}
		i = j + 1
	}
	return "ch. " + strings.Join(s, ", ")
}
