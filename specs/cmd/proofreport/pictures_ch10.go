package main

import (
	"fmt"
	"math"
	"strings"

	"portproof/specs/evidence"
)

// Chapter 10's pictures, drawn from the evidence ch10_epoll_test.go records: the same script
// on a level- and an edge-triggered registration (evidence.EntryEpollTrigger, an
// evidence.EpollTrigger), the time per call of epoll_wait and poll from the reader's run
// (evidence.EntryEpollScale, an evidence.EpollScale), and the waiters' wake-ups
// (evidence.EntryEpollHerd, a []evidence.EpollHerd).

// epollPictures draws epoll-triggers.svg, epoll-scale.svg and epoll-herd.svg.
func epollPictures(byID map[string]proof, pics map[string][]byte, missing notes) {
	var level, edge evidence.EpollTrigger
	haveLevel := decodeFirst(byID["epoll.level"], evidence.EntryEpollTrigger, &level)
	haveEdge := decodeFirst(byID["epoll.edge"], evidence.EntryEpollTrigger, &edge)
	if haveLevel && haveEdge {
		pics["epoll-triggers.svg"] = triggerPicture(level, edge)
	} else {
		why := "epoll.level and epoll.edge recorded no script in this run."
		pics["epoll-triggers.svg"], missing["epoll-triggers.svg"] = placeholder("Level- and edge-triggered epoll", why), why
	}

	var sc evidence.EpollScale
	if decodeFirst(byID["epoll.scale"], evidence.EntryEpollScale, &sc) && len(sc.Rounds) > 0 {
		pics["epoll-scale.svg"] = scalePicture(sc)
	} else {
		why := "epoll.scale recorded no timings in this run: it needs a private network namespace, " +
			"which root or an unprivileged user namespace gives."
		pics["epoll-scale.svg"], missing["epoll-scale.svg"] = placeholder("epoll_wait and poll, time per call", why), why
	}

	var runs []evidence.EpollHerd
	if decodeFirst(byID["epoll.exclusive"], evidence.EntryEpollHerd, &runs) && len(runs) == 2 {
		pics["epoll-herd.svg"] = herdPicture(runs)
	} else {
		why := "epoll.exclusive recorded no wake-ups in this run: it needs a private network namespace, " +
			"which root or an unprivileged user namespace gives."
		pics["epoll-herd.svg"], missing["epoll-herd.svg"] = placeholder("The thundering herd", why), why
	}
}

// triggerPicture draws the script a row per step: FIONREAD after it, and what each
// registration's epoll_wait reported.
func triggerPicture(level, edge evidence.EpollTrigger) []byte {
	n := min(len(level.Steps), len(edge.Steps))
	const top, row = 96, 30
	s := newSVG(860, top+n*row+56, "The same socket and script, level-triggered and edge-triggered: what each epoll_wait reported")
	s.text(430, 26, "middle", `font-weight="bold" font-size="16"`, "Level-triggered reports what is there; edge-triggered, what arrived")
	cols := []struct {
		x    int
		head string
	}{{40, "step"}, {300, "unread (FIONREAD)"}, {440, level.Registered}, {660, edge.Registered}}
	for _, c := range cols {
		s.text(c.x, top-20, "start", `font-weight="bold"`, c.head)
	}
	s.text(440, top-40, "start", `font-size="12" fill="#555555"`, "level-triggered")
	s.text(660, top-40, "start", `font-size="12" fill="#555555"`, "edge-triggered")
	cell := func(x, y int, st evidence.TriggerStep) {
		if st.Do != "wait" {
			return
		}
		switch {
		case st.Reported > 0:
			s.box(x, y-18, 190, 24, colSame)
			s.text(x+95, y-1, "middle", `font-size="13"`, "reported: EPOLLIN")
		case st.Unread > 0:
			s.box(x, y-18, 190, 24, colDiff)
			s.text(x+95, y-1, "middle", `font-size="13"`, fmt.Sprintf("nothing; %d bytes wait", st.Unread))
		default:
			s.box(x, y-18, 190, 24, colMuted)
			s.text(x+95, y-1, "middle", `font-size="13"`, "nothing (all read)")
		}
	}
	for i := range n {
		y := top + 10 + i*row
		l, e := level.Steps[i], edge.Steps[i]
		label := l.Do
		if l.Do == "wait" {
			label = "epoll_wait(…, 0)"
		}
		if l.Do == "read to EAGAIN" {
			label = fmt.Sprintf("read to EAGAIN (%d bytes)", l.Read)
		}
		s.text(40, y, "start", `font-family="monospace" font-size="13"`, label)
		s.text(300, y, "start", `font-family="monospace" font-size="13"`, fmt.Sprint(l.Unread))
		cell(440, y, l)
		cell(660, y, e)
	}
	s.text(430, top+n*row+30, "middle", `font-size="13"`,
		"orange: the lost wake-up, bytes unread and nothing reported until more arrive")
	return s.bytes()
}

// scalePicture is the chart of time per call, from the reader's run: connections
// registered (log scale) against µs per call (log scale), poll and epoll_wait.
func scalePicture(sc evidence.EpollScale) []byte {
	const w, h = 860, 440
	const left, right, top, bottom = 90, 200, 60, 70
	s := newSVG(w, h, "Time per call of poll(2) and epoll_wait(2) over idle connections, one of them ready, from this run")
	s.text(w/2, 28, "middle", `font-weight="bold" font-size="16"`, "One ready connection among many: time per call, from your run")
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range sc.Rounds {
		for _, v := range []float64{r.EpollNS / 1e3, r.PollNS / 1e3} {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 10
	}
	ylo, yhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if yhi <= ylo {
		yhi = ylo + 1
	}
	xlo := math.Log10(float64(sc.Rounds[0].Registered))
	xhi := math.Log10(float64(sc.Rounds[len(sc.Rounds)-1].Registered))
	if xhi <= xlo {
		xhi = xlo + 1
	}
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	px := func(n int) float64 { return float64(left) + (math.Log10(float64(n))-xlo)/(xhi-xlo)*pw }
	py := func(us float64) float64 { return float64(top) + (yhi-math.Log10(us))/(yhi-ylo)*ph }
	// Axes and grid.
	for e := ylo; e <= yhi; e++ {
		y := py(math.Pow(10, e))
		fmt.Fprintf(s, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0" stroke-width="1"/>`+"\n", left, y, w-right, y)
		s.text(left-8, int(y)+5, "end", `font-size="12"`, usLabel(math.Pow(10, e)))
	}
	for _, r := range sc.Rounds {
		x := px(r.Registered)
		fmt.Fprintf(s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0" stroke-width="1"/>`+"\n", x, top, x, h-bottom)
		s.text(int(x), h-bottom+20, "middle", `font-size="12"`, grouped(r.Registered))
	}
	s.text(left+int(pw)/2, h-bottom+44, "middle", `font-size="13"`, "connections registered (handed to poll), one of them ready")
	fmt.Fprintf(s, `<text x="22" y="%d" text-anchor="middle" font-size="13" transform="rotate(-90 22 %d)">µs per call</text>`+"\n", top+int(ph)/2, top+int(ph)/2)
	series := []struct {
		name, color string
		ns          func(evidence.ScaleRound) float64
	}{
		{"poll(2)", "#e65100", func(r evidence.ScaleRound) float64 { return r.PollNS }},
		{"epoll_wait(2)", "#1565c0", func(r evidence.ScaleRound) float64 { return r.EpollNS }},
	}
	for _, se := range series {
		var pts []string
		for _, r := range sc.Rounds {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(r.Registered), py(se.ns(r)/1e3)))
		}
		fmt.Fprintf(s, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5"/>`+"\n", strings.Join(pts, " "), se.color)
		for _, r := range sc.Rounds {
			x, y := px(r.Registered), py(se.ns(r)/1e3)
			fmt.Fprintf(s, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", x, y, se.color)
			s.text(int(x)+8, int(y)-8, "start", fmt.Sprintf(`font-size="12" fill="%s"`, se.color), usLabel(se.ns(r)/1e3))
		}
		last := sc.Rounds[len(sc.Rounds)-1]
		s.text(w-right+80, int(py(se.ns(last)/1e3))+5, "start", fmt.Sprintf(`font-weight="bold" fill="%s"`, se.color), se.name)
	}
	s.text(w/2, h-8, "middle", `font-size="12" fill="#555555"`,
		fmt.Sprintf("each point: the mean of many calls with timeout 0; %s connections open, their clients' ends in another process",
			grouped(sc.Connections)))
	return s.bytes()
}

// herdPicture draws each waiter's wake-ups and accepts, without and with EPOLLEXCLUSIVE.
func herdPicture(runs []evidence.EpollHerd) []byte {
	most := 1
	for _, r := range runs {
		for _, w := range r.Waiters {
			most = max(most, w.WokeUp)
		}
	}
	rows := 0
	for _, r := range runs {
		rows += len(r.Waiters)
	}
	const x0, bw, row = 150, 420, 30
	h := 70 + len(runs)*60 + rows*row + 30
	s := newSVG(860, h, "Wake-ups per waiter on one listener, without and with EPOLLEXCLUSIVE")
	s.text(430, 28, "middle", `font-weight="bold" font-size="16"`, "The thundering herd: wake-ups per waiter")
	y := 60
	for _, r := range runs {
		s.text(40, y+16, "start", `font-weight="bold"`, fmt.Sprintf("registered %s: %d connections, %d wake-ups in all, %d accepted",
			r.Registered, r.Connections, r.WokeUp, r.Accepted))
		y += 34
		for i, w := range r.Waiters {
			s.text(x0-12, y+18, "end", `font-size="13"`, fmt.Sprintf("waiter %d", i+1))
			s.box(x0, y, bw, 22, colMuted)
			if w.WokeUp > 0 {
				s.box(x0, y, max(2, bw*w.WokeUp/most), 22, colDiff)
			}
			if w.Accepted > 0 {
				s.box(x0, y, max(2, bw*w.Accepted/most), 22, colSame)
			}
			s.text(x0+bw+12, y+16, "start", `font-size="13"`,
				fmt.Sprintf("woke %d, epoll_wait returned %d, accepted %d", w.WokeUp, w.Returned, w.Accepted))
			y += row
		}
		y += 26
	}
	s.text(430, h-14, "middle", `font-size="12" fill="#555555"`,
		"orange: woken (voluntary context switches in epoll_wait, /proc/thread-self/status); blue: of those, accepted")
	return s.bytes()
}

// usLabel writes a time in µs with two significant digits or so.
func usLabel(us float64) string {
	switch {
	case us >= 10000:
		return fmt.Sprintf("%.0f ms", us/1000)
	case us >= 1000:
		return fmt.Sprintf("%.1f ms", us/1000)
	case us >= 10:
		return fmt.Sprintf("%.0f µs", us)
	default:
		return fmt.Sprintf("%.1f µs", us)
	}
}
