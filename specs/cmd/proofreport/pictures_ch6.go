package main

import (
	"fmt"
	"strings"

	"portproof/specs/evidence"
)

// Chapter 6's pictures, drawn from the evidence ch06_active_passive_test.go records
// (specs/evidence/activepassive.go): the passive socket and the active ones it spawns
// (passive.no-data's errno, socket_kinds and traffic; passive.spawns-active's
// descriptors_spawned and socket_kinds), and an SO_REUSEPORT group with the kernel's spread
// (passive.shared-port's reuseport_spread and reuseport_repeat).

const (
	passiveActiveSVG   = "passive-active.svg"
	reuseportSpreadSVG = "reuseport-spread.svg"
	ch6Purple          = `fill="#f3e5f5" stroke="#6a1b9a"`
)

// ch6Pictures draws chapter 6's two pictures into pics. A picture without its evidence is
// a placeholder that says why, and missing notes it for the proof page, unless the claim it
// is shown under has no spec at all in the report: the page says so already.
func ch6Pictures(byID map[string]proof, pics map[string][]byte, missing notes) {
	noData, spawns := byID["passive.no-data"], byID["passive.spawns-active"]
	var nd *ch6NoData
	if s, ok := ch6SpecWith(noData, evidence.EntrySocketKinds); ok {
		nd = ch6ReadNoData(s)
	}
	var sp *ch6Spawns
	if s, ok := ch6SpecWith(spawns, evidence.EntryDescriptorsSpawned); ok {
		sp = ch6ReadSpawns(s)
	}
	if b, err := passiveActivePicture(nd, sp); err == nil {
		pics[passiveActiveSVG] = b
	} else {
		why := "passive.no-data and passive.spawns-active recorded no sockets in this run (" +
			err.Error() + ")."
		pics[passiveActiveSVG] = placeholder("A passive socket and the active ones it spawns", why)
		if len(spawns.Specs) > 0 {
			missing[passiveActiveSVG] = why
		}
	}

	shared := byID["passive.shared-port"]
	var spread evidence.ReusePortSpread
	var repeats []evidence.ReusePortRepeat
	var err error
	if s, ok := ch6SpecWith(shared, evidence.EntryReusePortSpread); !ok {
		err = fmt.Errorf("no %s evidence", evidence.EntryReusePortSpread)
	} else if err = s.entries(evidence.EntryReusePortSpread)[0].decode(&spread); err == nil {
		if es := s.entries(evidence.EntryReusePortRepeat); len(es) > 0 {
			err = es[0].decode(&repeats)
		}
	}
	var b []byte
	if err == nil {
		b, err = reuseportPicture(spread, repeats)
	}
	if err == nil {
		pics[reuseportSpreadSVG] = b
	} else {
		why := "passive.shared-port recorded no SO_REUSEPORT group in this run (" +
			err.Error() + ")."
		pics[reuseportSpreadSVG] = placeholder("An SO_REUSEPORT group and the kernel's spread", why)
		if len(shared.Specs) > 0 {
			missing[reuseportSpreadSVG] = why
		}
	}
}

// ch6SpecWith is the first passed spec of p, IPv4 first, that recorded an entry named name.
func ch6SpecWith(p proof, name string) (specReport, bool) {
	for _, s := range p.passed() {
		if len(s.entries(name)) > 0 {
			return s, true
		}
	}
	return specReport{}, false
}

// ch6NoData is passive.no-data's story: one descriptor bound, then listening, refusing
// every call that needs a peer, and the connection it spawned.
type ch6NoData struct {
	bound, listener, client, accepted *evidence.SocketSeen
	refused                           []evidence.ErrnoSeen
	payload                           string
}

func ch6ReadNoData(s specReport) *ch6NoData {
	var kinds []evidence.SocketSeen
	if s.entries(evidence.EntrySocketKinds)[0].decode(&kinds) != nil {
		return nil
	}
	nd := &ch6NoData{}
	for i := range kinds {
		k := &kinds[i]
		switch {
		case k.Role == "listener":
			nd.listener = k
		case k.Role == "client":
			nd.client = k
		case k.Role == "accepted":
			nd.accepted = k
		case strings.HasPrefix(k.Role, "bound"):
			nd.bound = k
		}
	}
	if nd.listener == nil || nd.accepted == nil {
		return nil
	}
	for _, e := range s.entries(evidence.EntryErrno) {
		var r evidence.ErrnoSeen
		if e.decode(&r) == nil && r.Errno != "" {
			nd.refused = append(nd.refused, r)
		}
	}
	for _, e := range s.entries(evidence.EntryTraffic) {
		var t []evidence.TrafficSeen
		if e.decode(&t) == nil && len(t) > 0 {
			nd.payload = t[0].Payload
		}
	}
	return nd
}

// ch6Spawns is passive.spawns-active's: the descriptor counts, the listener, and the
// sockets accept4 returned.
type ch6Spawns struct {
	counts   evidence.DescriptorsSpawned
	listener *evidence.SocketSeen
	accepted []evidence.SocketSeen
}

func ch6ReadSpawns(s specReport) *ch6Spawns {
	sp := &ch6Spawns{}
	if s.entries(evidence.EntryDescriptorsSpawned)[0].decode(&sp.counts) != nil {
		return nil
	}
	var kinds []evidence.SocketSeen
	for _, e := range s.entries(evidence.EntrySocketKinds) {
		if e.decode(&kinds) == nil {
			break
		}
	}
	for i := range kinds {
		switch kinds[i].Role {
		case "listener":
			sp.listener = &kinds[i]
		case "accepted":
			sp.accepted = append(sp.accepted, kinds[i])
		}
	}
	if sp.counts.AfterAccept == 0 {
		return nil
	}
	return sp
}

// ch6RefusedLines groups the calls the listener refused by errno, in the order they failed:
// "read, recv, getpeername: ENOTCONN", "send: EPIPE".
func ch6RefusedLines(rs []evidence.ErrnoSeen) []string {
	var order []string
	calls := map[string][]string{}
	for _, r := range rs {
		if _, ok := calls[r.Errno]; !ok {
			order = append(order, r.Errno)
		}
		calls[r.Errno] = append(calls[r.Errno], r.Call)
	}
	var lines []string
	for _, errno := range order {
		lines = append(lines, strings.Join(calls[errno], ", ")+": "+errno)
	}
	return lines
}

// ch6Arrow draws a line from (x1, y1) to (x2, y2) ending in the picture's arrowhead.
func ch6Arrow(s *svg, x1, y1, x2, y2 int, color string) {
	fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5" `+
		`marker-end="url(#arrow6)"/>`+"\n", x1, y1, x2, y2, color)
}

// ch6Line draws a line; attrs style it.
func ch6Line(s *svg, x1, y1, x2, y2 int, attrs string) {
	fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" %s/>`+"\n", x1, y1, x2, y2, attrs)
}

// ch6Dot draws a circle; attrs fill it.
func ch6Dot(s *svg, cx, cy, r int, attrs string) {
	fmt.Fprintf(s, `<circle cx="%d" cy="%d" r="%d" %s/>`+"\n", cx, cy, r, attrs)
}

// ch6Card is a box with a bold first line and smaller lines under it.
func ch6Card(s *svg, x, y, w int, style, head string, lines ...string) int {
	h := 30 + 18*len(lines)
	s.box(x, y, w, h, style)
	s.text(x+10, y+21, "start", `font-weight="bold" font-size="13"`, head)
	for i, l := range lines {
		s.text(x+10, y+40+18*i, "start", `font-size="12.5"`, l)
	}
	return h
}

// ch6AcceptConn is k's SO_ACCEPTCONN as a card shows it: 1 passive, 0 active.
func ch6AcceptConn(k evidence.SocketSeen) string {
	return fmt.Sprintf("SO_ACCEPTCONN %d", k.AcceptConn)
}

// passiveActivePicture draws passive.no-data's descriptor before and after listen() and the
// socket accept() spawned from it (nd), and passive.spawns-active's listener with every
// descriptor accept4 returned and the process's descriptor counts (sp).
func passiveActivePicture(nd *ch6NoData, sp *ch6Spawns) ([]byte, error) {
	if nd == nil && sp == nil {
		return nil, fmt.Errorf("no %s or %s evidence",
			evidence.EntrySocketKinds, evidence.EntryDescriptorsSpawned)
	}
	const width = 860
	h := 50
	if nd != nil {
		h += 330
	}
	if sp != nil {
		h += 200 + max(len(sp.accepted), len(sp.counts.Accepted), 4)*30
	}
	s := newSVG(width, h, "A passive socket and the active sockets it spawns, as the kernel "+
		"described them: descriptor, TCP state, SO_ACCEPTCONN, addresses")
	s.arrowheads(7, arrowhead{"arrow6", "#424242"})
	s.text(width/2, 28, "middle", `font-weight="bold" font-size="16"`,
		"One passive socket; every accept() spawns an active one")
	y := 50
	if nd != nil {
		y = ch6DrawNoData(s, nd, y)
	}
	if sp != nil {
		ch6DrawSpawns(s, sp, y)
	}
	return s.bytes(), nil
}

func ch6DrawNoData(s *svg, nd *ch6NoData, y int) int {
	s.text(20, y+16, "start", `font-weight="bold"`,
		"listen() turns a socket passive; accept() hands over a new, active one")
	const w, top = 240, 48
	x1, x2, x3 := 20, 310, 600
	by := y + top
	label := func(x int, call string) {
		ch6Arrow(s, x, by+40, x+46, by+40, "#424242") // the boxes are 50 apart
		s.text(x+25, by-8, "middle", `font-size="12" font-family="monospace"`, call)
	}
	if b := nd.bound; b != nil {
		ch6Card(s, x1, by, w, colMuted, fmt.Sprintf("fd %d: bound, not listening", b.FD),
			"state "+b.State, ch6AcceptConn(*b), b.Local)
		label(x1+w, "listen()")
	}
	l := nd.listener
	lines := []string{"state " + l.State, ch6AcceptConn(*l), l.Local + ", no peer"}
	if len(nd.refused) > 0 {
		lines = append(lines, "with a connection queued:")
		for _, r := range ch6RefusedLines(nd.refused) {
			lines = append(lines, "  "+r)
		}
	}
	lh := ch6Card(s, x2, by, w, colDiff, fmt.Sprintf("fd %d: the listener (passive)", l.FD),
		lines...)
	a := nd.accepted
	label(x2+w, "accept4()")
	alines := []string{"state " + a.State, ch6AcceptConn(*a), "peer " + a.Peer}
	if nd.payload != "" {
		alines = append(alines, fmt.Sprintf("read: %q, sent before accept()", nd.payload))
	}
	ah := ch6Card(s, x3, by, w, colSame, fmt.Sprintf("fd %d: accepted (active)", a.FD), alines...)
	if c := nd.client; c != nil {
		cy := by + ah + 34
		ch6Card(s, x3, cy, w, ch6Purple, fmt.Sprintf("fd %d: the client (active)", c.FD),
			"state "+c.State, ch6AcceptConn(*c), "local "+c.Local)
		ch6Line(s, x3+w/2, by+ah, x3+w/2, cy,
			`stroke="#6a1b9a" stroke-width="2" stroke-dasharray="5,3"`)
		s.text(x3+w/2+8, by+ah+21, "start", `font-size="12" fill="#6a1b9a"`, "one connection")
	}
	return y + top + max(lh, 254) + 20
}

func ch6DrawSpawns(s *svg, sp *ch6Spawns, y int) {
	c := sp.counts
	n := len(c.Accepted)
	s.text(20, y+16, "start", `font-weight="bold"`, fmt.Sprintf(
		"%d connections: %d new descriptors from accept4(), and the listener still listening",
		n, n))
	top := y + 34
	lx, lw := 20, 250
	state := c.ListenerState
	lines := []string{"state " + state}
	if sp.listener != nil {
		lines = append(lines, ch6AcceptConn(*sp.listener), sp.listener.Local)
	}
	lines = append(lines, fmt.Sprintf("accept queue: %d, then %d", c.QueuedBefore, c.QueuedAfter))
	lh := ch6Card(s, lx, top, lw, colDiff,
		fmt.Sprintf("fd %d: the listener (passive)", c.Listener), lines...)

	rows := sp.accepted
	if len(rows) == 0 {
		for _, fd := range c.Accepted {
			rows = append(rows, evidence.SocketSeen{FD: fd})
		}
	}
	const rx, rw, rh, gap = 420, 420, 24, 6
	for i, k := range rows {
		ry := top + i*(rh+gap)
		s.box(rx, ry, rw, rh, colSame)
		label := fmt.Sprintf("fd %d", k.FD)
		if k.State != "" {
			label += fmt.Sprintf(" · %s · %s · peer %s", k.State, ch6AcceptConn(k), k.Peer)
		}
		s.text(rx+10, ry+17, "start", `font-size="12.5"`, label)
		ch6Line(s, lx+lw, top+lh/2, rx, ry+rh/2, `stroke="#1565c0" stroke-width="1.2"`)
	}
	s.text((lx+lw+rx)/2, top+lh/2-10, "middle", `font-size="12" font-family="monospace"`,
		"accept4()")

	// The process's descriptors, as /proc/self/fd counted them: bars to one scale.
	by := top + max(len(rows), 4)*(rh+gap) + 20
	s.text(20, by+14, "start", `font-weight="bold" font-size="13"`,
		"The process's open descriptors (/proc/self/fd)")
	unit := 0.0
	if c.AfterAccept > 0 {
		unit = 300.0 / float64(c.AfterAccept)
	}
	clients := c.AfterConnect - c.Before
	accepted := c.AfterAccept - c.AfterConnect
	type part struct {
		n     int
		style string
	}
	bar := func(row int, label, note string, parts ...part) {
		yy := by + 28 + row*34
		s.text(200, yy+17, "end", `font-size="12.5"`, label)
		x := 210
		for _, p := range parts {
			if w := int(float64(p.n)*unit + 0.5); w > 0 {
				s.box(x, yy, w, 24, p.style)
				x += w
			}
		}
		s.text(x+8, yy+17, "start", `font-size="12.5"`, note)
	}
	alone := part{c.Before, colMuted}
	conns, spawned := part{clients, ch6Purple}, part{accepted, colSame}
	bar(0, "the listener alone", fmt.Sprintf("%d, the listener's among them", c.Before), alone)
	bar(1, fmt.Sprintf("after %d connect()", clients), fmt.Sprintf(
		"%d: +%d client sockets; %d connections queued", c.AfterConnect, clients, c.QueuedBefore),
		alone, conns)
	bar(2, fmt.Sprintf("after %d accept4()", accepted), fmt.Sprintf(
		"%d: +%d accepted sockets, one per connection", c.AfterAccept, accepted),
		alone, conns, spawned)
}

// reuseportPicture draws an SO_REUSEPORT group's accept queues after a burst of
// connections, against an even share, and the listener each repeated 4-tuple landed on,
// both times.
func reuseportPicture(sp evidence.ReusePortSpread,
	repeats []evidence.ReusePortRepeat) ([]byte, error) {
	n := len(sp.Listeners)
	if n == 0 {
		return nil, fmt.Errorf("the spread lists no listener")
	}
	const width, x0, span = 860, 200, 620
	cw := span / n
	colX := func(i int) int { return x0 + i*cw + cw/2 }
	const barTop, barH = 110, 200
	h := barTop + barH + 90
	if len(repeats) > 0 {
		h += 50 + len(repeats)*28 + 40
	}
	s := newSVG(width, h, "An SO_REUSEPORT group: the listeners' accept queues after a burst "+
		"of connections, and where each repeated 4-tuple landed")
	s.text(width/2, 28, "middle", `font-weight="bold" font-size="16"`,
		fmt.Sprintf("%d listeners on %s with SO_REUSEPORT: the kernel picks one per connection",
			n, sp.Addr))
	s.text(width/2, 52, "middle", `font-size="13"`, fmt.Sprintf(
		"%d connections, no accept() yet: each waits in the queue of the listener the kernel chose",
		sp.Connected))

	peak := uint32(0)
	for _, l := range sp.Listeners {
		peak = max(peak, l.Queued)
	}
	even := float64(sp.Connected) / float64(n)
	scale := float64(barH) / max(float64(peak), even) / 1.1
	base := barTop + barH
	s.text(x0-12, base+4, "end", `font-size="12"`, "0")
	s.text(x0-12, base+20, "end", `font-size="12"`, "queued")
	for i, l := range sp.Listeners {
		cx := colX(i)
		s.text(cx, barTop-24, "middle", `font-weight="bold" font-size="13"`,
			fmt.Sprintf("listener %d", i))
		s.text(cx, barTop-8, "middle", `font-size="12"`, fmt.Sprintf("fd %d", l.FD))
		bh := int(float64(l.Queued)*scale + 0.5)
		bw := min(cw-30, 90)
		s.box(cx-bw/2, base-bh, bw, bh, colSame)
		s.text(cx, base+20, "middle", `font-weight="bold"`, fmt.Sprintf("%d", l.Queued))
	}
	ey := base - int(even*scale+0.5)
	ch6Line(s, x0, ey, x0+span, ey, `stroke="#e65100" stroke-width="1.5" stroke-dasharray="6,4"`)
	s.text(x0-12, ey+4, "end", `font-size="12" fill="#e65100"`,
		fmt.Sprintf("an even share, %.0f", even))
	ch6Line(s, x0, base, x0+span, base, `stroke="#9e9e9e" stroke-width="1.5"`)
	lo, hi := peak, peak
	for _, l := range sp.Listeners {
		lo = min(lo, l.Queued)
	}
	off := max(float64(hi)-even, even-float64(lo)) / even * 100
	s.text(width/2, base+46, "middle", `font-size="13"`, fmt.Sprintf(
		"accept queues (TCP_INFO) before any loop ran: %d to %d, within %.0f%% of an even share",
		lo, hi, off))
	if len(repeats) == 0 {
		return s.bytes(), nil
	}

	ry := base + 90
	s.text(width/2, ry, "middle", `font-weight="bold"`, fmt.Sprintf(
		"%d client 4-tuples, each connected, reset, and connected again", len(repeats)))
	for i := range n {
		ch6Line(s, colX(i), ry+12, colX(i), ry+24+(len(repeats)-1)*28+10,
			`stroke="#bdbdbd" stroke-dasharray="2,4"`)
	}
	const firstDot = `fill="#1565c0"`
	const secondDot = `fill="#ffffff" stroke="#e65100" stroke-width="2.5"`
	same := 0
	for i, r := range repeats {
		y := ry + 24 + i*28
		label := r.Tuple
		if _, local, _, err := tupleOf(r.Tuple); err == nil {
			label = "from " + local.String()
		}
		s.text(x0-12, y+5, "end", `font-size="12" font-family="monospace"`, label)
		ch6Line(s, x0, y, x0+span, y, `stroke="#e0e0e0"`)
		if r.First >= 0 && r.First < n {
			ch6Dot(s, colX(r.First)-10, y, 7, firstDot)
		}
		if r.Second >= 0 && r.Second < n {
			ch6Dot(s, colX(r.Second)+10, y, 7, secondDot)
		}
		if r.First == r.Second {
			same++
		}
	}
	ly := ry + 24 + len(repeats)*28 + 8
	ch6Dot(s, x0, ly, 6, firstDot)
	s.text(x0+12, ly+4, "start", `font-size="12.5"`, "first connection")
	ch6Dot(s, x0+150, ly, 6, secondDot)
	s.text(x0+162, ly+4, "start", `font-size="12.5"`, "the same 4-tuple again")
	verdict := fmt.Sprintf("%d of %d landed on the same listener twice", same, len(repeats))
	if same == len(repeats) {
		verdict = fmt.Sprintf("all %d landed on the same listener twice: ", same) +
			"the kernel hashes the 4-tuple, it takes no turns"
	}
	s.text(width/2, ly+30, "middle", `font-size="13"`, verdict)
	return s.bytes(), nil
}
