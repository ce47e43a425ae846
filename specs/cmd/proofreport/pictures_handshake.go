package main

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"portproof/specs/evidence"
)

// Chapter 5's picture: handshake.before-accept's connection on one time axis, drawn to
// scale. The segments sit at the kernel's timestamps, the system calls at the times the
// child took with time.Now: both read CLOCK_REALTIME, so one axis holds them all without
// any alignment, in µs after the client's SYN: the spec's evidence.Timeline (EntryPackets)
// and its []evidence.TimelineCall (EntrySyscalls, EntryAcceptAt).

// handshakeFigure is the picture for handshake.before-accept, or, when this run did not
// produce its evidence, a placeholder and the reason, for the page.
func handshakeFigure(p proof) (pic []byte, why string) {
	b, err := handshakeSVG(p)
	if err == nil {
		return b, ""
	}
	why = "handshake.before-accept captured no packets in this run (" + err.Error() + "): " +
		"capture needs a private network namespace, which root or an unprivileged user namespace gives."
	if len(p.Specs) == 0 {
		why = "handshake.before-accept has no spec in this report yet, so no packets to draw."
	}
	return placeholder("The handshake, packet by packet", why), why
}

// handshakeSVG draws from the first passing spec of p, IPv4 first, whose evidence holds the
// segments: its evidence.EntryPackets, with its EntrySyscalls (or, lacking them,
// EntryAcceptAt).
func handshakeSVG(p proof) ([]byte, error) {
	if len(p.Specs) == 0 {
		return nil, fmt.Errorf("no spec")
	}
	ordered := slices.Clone(p.Specs)
	slices.SortStableFunc(ordered, func(a, b specReport) int {
		return strings.Compare(a.family(), b.family()) // "" < "ipv4" < "ipv6"
	})
	err := fmt.Errorf("no %q evidence", evidence.EntryPackets)
	for _, s := range ordered {
		if s.State != "passed" {
			continue
		}
		for _, e := range s.entries(evidence.EntryPackets) {
			var t evidence.Timeline
			derr := e.decode(&t)
			if derr == nil && len(t.Packets) == 0 {
				derr = fmt.Errorf("the capture is empty")
			}
			if derr != nil {
				err = derr
				continue
			}
			b, derr := handshakePicture(t.Packets, hsCallsOf(s))
			if derr == nil {
				return b, nil
			}
			err = derr
		}
	}
	return nil, err
}

// hsCallsOf reads a spec's system calls on the timeline: its evidence.EntrySyscalls, and its
// EntryAcceptAt as accept4's call when the list lacks it.
func hsCallsOf(s specReport) []evidence.TimelineCall {
	var calls []evidence.TimelineCall
	for _, e := range s.entries(evidence.EntrySyscalls) {
		var cs []evidence.TimelineCall
		if e.decode(&cs) == nil {
			calls = append(calls, cs...)
		}
	}
	if slices.ContainsFunc(calls, func(c evidence.TimelineCall) bool {
		return strings.HasPrefix(c.Call, "accept")
	}) {
		return calls
	}
	for _, e := range s.entries(evidence.EntryAcceptAt) {
		var us int64
		if e.decode(&us) == nil {
			calls = append(calls, evidence.TimelineCall{Call: "accept4 called", AtUS: us})
			break
		}
	}
	return calls
}

// hsEvent is one mark on the picture: a segment, a call, or the time the connection
// waited in the accept queue.
type hsEvent struct {
	at     float64 // µs after the SYN; a span's middle
	client bool    // labelled on the client's side
	kind   string  // "segment", "connect", "accept", "queued"
	head   string  // the label's monospace part: the flags, the call
	rest   string  // the rest of the label
	seg    *evidence.TimelinePacket
	from   float64 // a span's start and end
	to     float64
}

// handshakePicture draws the segments and the calls as a sequence diagram between client
// and server, time running down to scale: each mark's height is its time.
func handshakePicture(segs []evidence.TimelinePacket, calls []evidence.TimelineCall) ([]byte, error) {
	syn := slices.IndexFunc(segs, func(sg evidence.TimelinePacket) bool {
		return sg.Flags == "SYN" && sg.From == "client"
	})
	if syn < 0 {
		return nil, fmt.Errorf("no SYN from the client among %d segments", len(segs))
	}
	client, server := segs[syn].Src, segs[syn].Dst
	fromClient := func(sg evidence.TimelinePacket) bool { return sg.From == "client" }
	at := func(sg evidence.TimelinePacket) float64 { return float64(sg.AtUS - segs[syn].AtUS) }

	var events []hsEvent
	var handshakeACK, lastData = math.NaN(), -1
	for i := range segs {
		sg := &segs[i]
		e := hsEvent{at: at(*sg), client: fromClient(*sg), kind: "segment", head: sg.Flags, seg: sg}
		switch {
		case sg.Len > 0:
			e.rest = fmt.Sprintf(" %d bytes of data", sg.Len)
			lastData = i
		case e.client && sg.Flags == "ACK" && math.IsNaN(handshakeACK):
			handshakeACK = e.at // the handshake's last segment: the kernel queues the connection
		case !e.client && sg.Flags == "ACK" && lastData >= 0 &&
			sg.Ack == segs[lastData].Seq+uint32(segs[lastData].Len):
			e.rest = " of all the data"
		}
		events = append(events, e)
	}
	acceptAt := math.NaN()
	for _, c := range calls {
		us := float64(c.AtUS)
		switch {
		case strings.HasPrefix(c.Call, "connect returned"):
			events = append(events, hsEvent{at: us, client: true, kind: "connect", head: "connect()",
				rest: " returned"})
		case strings.HasPrefix(c.Call, "accept4 called") && math.IsNaN(acceptAt):
			acceptAt = us
			events = append(events, hsEvent{at: us, kind: "accept", head: "accept()", rest: " called"})
		}
	}
	if !math.IsNaN(handshakeACK) && acceptAt > handshakeACK {
		events = append(events, hsEvent{at: (handshakeACK + acceptAt) / 2, kind: "queued",
			rest: fmt.Sprintf("in the accept queue for %.0f µs", acceptAt-handshakeACK),
			from: handshakeACK, to: acceptAt})
	}
	slices.SortStableFunc(events, func(a, b hsEvent) int { return cmp.Compare(a.at, b.at) })
	return hsDraw(client, server, events), nil
}

// The picture's geometry: the time axis, the client's and the server's lifelines, and the
// heights the axes span, the whole story's and the magnified one's.
const (
	hsWidth    = 860
	hsAxisX    = 78
	hsCX       = 330
	hsSX       = 590
	hsSpan     = 440
	hsZoomSpan = 300
	hsLabelH   = 22 // a label's height: labels closer in time are spread apart, in order
	hsCrowded  = 10 // marks closer than this many pixels call for a magnified copy,
	hsZoomAt   = 4  // if it magnifies them at least this many times

	hsHandshake = "#1565c0" // the segments without data
	hsData      = "#e65100" // the segment that carries the client's bytes
)

// hsPanel is one time axis of the picture, to scale: from 0 at top to end at top+span.
type hsPanel struct {
	name      string // "whole" or "zoom", in each mark's data-panel
	events    []hsEvent
	top, span float64
	end, step float64   // the axis's last tick, and the interval between ticks
	labelY    []float64 // each event's label's height
}

// newHSPanel lays events out on an axis from 0 to a round number past last, top to top+span,
// each side's labels in time order at their marks' heights where they fit.
func newHSPanel(name string, events []hsEvent, top, span, last float64) *hsPanel {
	step := hsNiceStep(last)
	p := &hsPanel{name: name, events: events, top: top, span: span, step: step,
		end: math.Max(step, math.Ceil(last/step)*step), labelY: make([]float64, len(events))}
	for _, client := range []bool{true, false} {
		var side []int
		for i, e := range events {
			if e.client == client {
				side = append(side, i)
			}
		}
		want := make([]float64, len(side))
		for k, i := range side {
			want[k] = p.y(events[i].at)
		}
		for k, got := range hsSpread(want, hsLabelH, top-6) {
			p.labelY[side[k]] = got
		}
	}
	return p
}

// y is the height of a time on the panel's axis.
func (p *hsPanel) y(us float64) float64 { return p.top + us/p.end*p.span }

// bottom is the panel's lowest point: its axis's end, or a label pushed below it.
func (p *hsPanel) bottom() float64 {
	b := p.top + p.span + 14
	for _, ly := range p.labelY {
		b = max(b, ly+10)
	}
	return b
}

// crowded says whether two of the panel's marks (the queue's bar aside) are so close in time
// that their arrows would run together.
func (p *hsPanel) crowded() bool {
	var at []float64
	for _, e := range p.events {
		if e.kind != "queued" {
			at = append(at, e.at)
		}
	}
	slices.Sort(at)
	for i := 1; i < len(at); i++ {
		if (at[i]-at[i-1])/p.end*p.span < hsCrowded {
			return true
		}
	}
	return false
}

// hsDraw draws the events on one axis to scale from 0 to a round number past the last; and,
// when some are too close to tell apart there, the ones before accept() again, magnified,
// on an axis of their own, to scale too.
func hsDraw(client, server string, events []hsEvent) []byte {
	last, acceptAt := 0.0, math.Inf(1)
	for _, e := range events {
		last = max(last, e.at, e.to)
		if e.kind == "accept" {
			acceptAt = e.at
		}
	}
	whole := newHSPanel("whole", events, 120, hsSpan, last)
	panels := []*hsPanel{whole}

	var early []hsEvent
	cut := 0.0
	for _, e := range events {
		if e.kind != "queued" && e.at < acceptAt {
			early = append(early, e)
			cut = max(cut, e.at)
		}
	}
	zoomTop := whole.bottom() + 90
	zoomEnd := math.Ceil(cut/hsNiceStep(cut)) * hsNiceStep(cut)
	if magnified := (hsZoomSpan / zoomEnd) / (whole.span / whole.end); whole.crowded() && magnified >= hsZoomAt {
		for _, e := range events {
			if e.kind == "queued" && e.from < zoomEnd {
				e.to = min(e.to, zoomEnd)
				e.at = (e.from + e.to) / 2
				e.rest = fmt.Sprintf("in the accept queue till %.0f µs", acceptAt)
				early = append(early, e)
			}
		}
		slices.SortStableFunc(early, func(a, b hsEvent) int { return cmp.Compare(a.at, b.at) })
		panels = append(panels, newHSPanel("zoom", early, zoomTop, hsZoomSpan, cut))
	}
	h := int(panels[len(panels)-1].bottom()) + 50

	s := newSVG(hsWidth, h, "The TCP handshake on lo, the client's data, connect() and accept(), to scale in time")
	s.text(hsWidth/2, 28, "middle", `font-weight="bold" font-size="16"`,
		"The handshake, to scale in time: all of it before accept()")
	s.text(hsWidth/2, 50, "middle", `font-size="13" fill="#555555"`,
		"Time runs down: each mark is as far down as it was late, in µs after the client's SYN.")
	s.text(hsCX, 86, "middle", `font-weight="bold"`, "client "+client)
	s.text(hsSX, 86, "middle", `font-weight="bold"`, "server "+server)
	s.arrowheads(8, arrowhead{"arrow-handshake", hsHandshake}, arrowhead{"arrow-data", hsData})
	whole.draw(s)
	if len(panels) > 1 {
		zoom := panels[1]
		fmt.Fprintf(s, `<line x1="20" y1="%.1f" x2="%d" y2="%.1f" stroke="#bdbdbd" stroke-width="1"/>`+"\n",
			zoomTop-70, hsWidth-20, zoomTop-70)
		s.text(hsWidth/2, int(zoomTop-44), "middle", `font-weight="bold" font-size="15"`,
			fmt.Sprintf("The same, up to %s µs: magnified %.0f times, to scale too",
				strconv.FormatFloat(zoom.end, 'f', -1, 64), (zoom.span/zoom.end)/(whole.span/whole.end)))
		s.text(hsCX, int(zoomTop-20), "middle", `font-size="13" font-weight="bold"`, "client")
		s.text(hsSX, int(zoomTop-20), "middle", `font-size="13" font-weight="bold"`, "server")
		zoom.draw(s)
	}

	s.text(hsWidth/2, h-30, "middle", `font-size="12" fill="#555555"`,
		"Segments at the kernel's timestamp as lo carried them (SO_TIMESTAMPNS); calls at time.Now() in the")
	s.text(hsWidth/2, h-14, "middle", `font-size="12" fill="#555555"`,
		"process that made them. Both clocks are CLOCK_REALTIME: one clock, no alignment needed.")
	return s.bytes()
}

// draw draws the panel's axis, its ticks and faint lines across at each, the lifelines, the
// marks (the queue under the rest), then the labels over them.
func (p *hsPanel) draw(s *svg) {
	fmt.Fprintf(s, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#757575" stroke-width="1.5"/>`+"\n",
		hsAxisX, p.top, hsAxisX, p.y(p.end))
	s.text(hsAxisX, int(p.top-18), "middle", `font-size="12" fill="#555555"`, "µs")
	for t := 0.0; t <= p.end+p.step/2; t += p.step {
		ty := p.y(t)
		fmt.Fprintf(s, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#757575" stroke-width="1.5"/>`+"\n",
			hsAxisX-5, ty, hsAxisX, ty)
		fmt.Fprintf(s, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eeeeee" stroke-width="1"/>`+"\n",
			hsAxisX, ty, hsSX+10, ty)
		fmt.Fprintf(s, `<text x="%d" y="%.1f" text-anchor="end" font-size="12" fill="#555555">%s</text>`+"\n",
			hsAxisX-9, ty+4, strconv.FormatFloat(t, 'f', -1, 64))
	}
	for _, x := range []int{hsCX, hsSX} {
		fmt.Fprintf(s, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#9e9e9e" stroke-width="2"/>`+"\n",
			x, p.top-14, x, p.y(p.end)+14)
	}
	for _, under := range []bool{true, false} {
		for _, e := range p.events {
			if (e.kind == "queued") == under {
				hsDrawMark(s, p.name, e, p.y)
			}
		}
	}
	for i, e := range p.events {
		hsDrawLabel(s, e, p.y(e.at), p.labelY[i])
	}
}

// hsDrawMark draws an event where its time puts it: a segment as an arrow from its sender to
// its receiver, a call as a mark on its side's lifeline, the queue as a bar beside the
// server's. Each carries its time (data-us) and its height, so a test can check the scale.
func hsDrawMark(s *svg, panel string, e hsEvent, y func(float64) float64) {
	ey := y(e.at)
	mark := fmt.Sprintf(`data-panel="%s" data-us="%g"`, panel, e.at)
	switch e.kind {
	case "segment":
		x1, x2, colour, arrow := hsCX, hsSX, hsHandshake, "handshake"
		if !e.client {
			x1, x2 = hsSX, hsCX
		}
		if e.seg.Len > 0 {
			colour, arrow = hsData, "data"
		}
		fmt.Fprintf(s, `<line %s x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="2" `+
			`marker-end="url(#arrow-%s)"/>`+"\n", mark, x1, ey, x2, ey, colour, arrow)
	case "connect":
		fmt.Fprintf(s, `<circle %s cx="%d" cy="%.1f" r="6" fill="%s"/>`+"\n", mark, hsCX, ey, hsHandshake)
	case "accept":
		fmt.Fprintf(s, `<rect %s x="%d" y="%.1f" width="14" height="14" fill="%s"/>`+"\n",
			mark, hsSX-7, ey-7, hsData)
	case "queued":
		fmt.Fprintf(s, `<rect %s x="%d" y="%.1f" width="8" height="%.1f" fill="#ffe0b2" `+
			`stroke="#e65100" stroke-width="1"/>`+"\n", mark, hsSX+2, y(e.from), y(e.to)-y(e.from))
	}
}

// hsDrawLabel writes an event's label on its side, at height ly (its mark's, unless a nearer
// one took that place), with a thin line to the mark at my.
func hsDrawLabel(s *svg, e hsEvent, my, ly float64) {
	when := fmt.Sprintf(" at %.0f µs", e.at)
	if e.kind == "queued" {
		when = ""
	}
	width := hsTextWidth(e.head, 7.8) + hsTextWidth(e.rest+when, 6.2)
	markX := float64(hsSX)
	x, anchor, end := float64(hsSX+18), "start", float64(hsSX+14)
	if e.kind == "queued" {
		markX = hsSX + 6
	}
	if e.client {
		markX, x, anchor, end = hsCX, hsCX-18, "end", hsCX-14
	}
	fmt.Fprintf(s, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#9e9e9e" stroke-width="1"/>`+"\n",
		end, ly, markX, my)
	weight, boxStyle := "", ""
	switch e.kind {
	case "connect":
		weight, boxStyle = ` font-weight="bold"`, colSame
	case "accept":
		weight, boxStyle = ` font-weight="bold"`, colDiff
	}
	if boxStyle != "" {
		bx := x - 6
		if e.client {
			bx = x - width - 6
		}
		fmt.Fprintf(s, `<rect x="%.1f" y="%.1f" width="%.1f" height="20" rx="5" %s stroke-width="1.5"/>`+"\n",
			bx, ly-10, width+12, boxStyle)
	}
	style := `font-size="13"`
	if e.kind == "queued" {
		style = `font-size="13" font-style="italic" fill="#555555"`
	}
	fmt.Fprintf(s, `<text x="%.1f" y="%.1f" text-anchor="%s" %s%s>`, x, ly+4.5, anchor, style, weight)
	if e.head != "" {
		fmt.Fprintf(s, `<tspan font-family="monospace">%s</tspan>`, esc(e.head))
	}
	fmt.Fprintf(s, "%s</text>\n", esc(e.rest+when))
}

// hsTextWidth estimates a string's width in px at perChar px a character.
func hsTextWidth(t string, perChar float64) float64 {
	return float64(utf8.RuneCountInString(t)) * perChar
}

// hsNiceStep is a tick interval for an axis up to last: 1, 2 or 5 times a power of ten, so
// that the axis has four to eight ticks.
func hsNiceStep(last float64) float64 {
	if last <= 0 {
		return 1
	}
	for p := math.Pow(10, math.Floor(math.Log10(last/8))); ; p *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if last/(m*p) <= 8 {
				return m * p
			}
		}
	}
}

// hsSpread places labels wanted at heights want (in order) at least gap apart and not above
// top: each group that would overlap is centred on what its labels want.
func hsSpread(want []float64, gap, top float64) []float64 {
	type group struct {
		first, n int
		at       float64 // the group's first label
	}
	var gs []group
	for i, w := range want {
		gs = append(gs, group{first: i, n: 1, at: w})
		for len(gs) > 1 {
			a, b := gs[len(gs)-2], gs[len(gs)-1]
			if a.at+float64(a.n)*gap <= b.at {
				break
			}
			merged := group{first: a.first, n: a.n + b.n}
			for k := range merged.n {
				merged.at += want[merged.first+k] - float64(k)*gap
			}
			merged.at /= float64(merged.n)
			gs = append(gs[:len(gs)-2], merged)
		}
	}
	out := make([]float64, 0, len(want))
	for _, g := range gs {
		for k := range g.n {
			at := g.at + float64(k)*gap
			if len(out) > 0 {
				at = max(at, out[len(out)-1]+gap)
			}
			out = append(out, max(at, top))
		}
	}
	return out
}
