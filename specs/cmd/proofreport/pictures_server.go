package main

import (
	"fmt"
	"math"
	"net/netip"
	"strings"

	"portproof/specs/evidence"
)

// The server page's picture (chapters/server.md): the four steps a server makes, and what the
// kernel holds after each, drawn from three proofs of this run. Chapter 6's passive.no-data
// takes one socket through socket, bind, listen and accept, with a client's connect, and
// describes it after each (socket_kinds); chapter 4's backlog.queue reads an accept queue's
// limit back (backlog_queue); chapter 6's passive.spawns-active accepts eight clients from one
// listener (descriptors_spawned, tuples). Each part of the picture names the proof it is from.

// serverSteps is what the picture is drawn from; only Sockets is required.
type serverSteps struct {
	Sockets    map[string]evidence.SocketSeen // by role: "bound, before listen", "listener", ...
	Queued     int                            // the listener's accept queue while nothing was accepted
	Queue      *evidence.QueueSeen            // backlog.queue's listener
	Spawned    *evidence.DescriptorsSpawned   // passive.spawns-active's descriptors
	Tuples     []evidence.TupleSeen           // and the 4-tuple of each connection it accepted
	SynCookies string                         // net.ipv4.tcp_syncookies, from the machine entry
}

// serverPictures draws server-steps.svg, or its placeholder with the reason.
func serverPictures(r suiteReport, byID map[string]proof, pics map[string][]byte, missing notes) {
	const name = "server-steps.svg"
	st := serverSteps{Queued: -1}
	var socks []evidence.SocketSeen
	if decodeFirst(byID["passive.no-data"], evidence.EntrySocketKinds, &socks) {
		st.Sockets = map[string]evidence.SocketSeen{}
		for _, s := range socks {
			st.Sockets[s.Role] = s
		}
		st.Queued = queuedFigure(byID["passive.no-data"])
	}
	var q evidence.QueueSeen
	if decodeFirst(byID["backlog.queue"], evidence.EntryBacklogQueue, &q) {
		st.Queue = &q
	}
	var sp evidence.DescriptorsSpawned
	if decodeFirst(byID["passive.spawns-active"], evidence.EntryDescriptorsSpawned, &sp) {
		st.Spawned = &sp
		decodeFirst(byID["passive.spawns-active"], evidence.EntryTuples, &st.Tuples)
	}
	if m, err := machineOf(r); err == nil {
		st.SynCookies = m.Sysctls["net.ipv4.tcp_syncookies"]
	}
	b, err := serverStepsPicture(st)
	if err != nil {
		why := "passive.no-data recorded no sockets in this run (" + err.Error() + ")."
		pics[name], missing[name] = placeholder("socket, bind, listen, accept", why), why
		return
	}
	pics[name] = b
}

// queuedFigure is the "queued" figure passive.no-data cited: the listener's accept queue
// while every call on the listener was tried, before accept. -1 when there is none.
func queuedFigure(p proof) int {
	n := -1
	fromSpecs(p, evidence.EntryFigures, func(e reportEntry) ([]byte, error) {
		var f struct {
			Queued *int `json:"queued"`
		}
		if err := e.decode(&f); err != nil || f.Queued == nil {
			return nil, fmt.Errorf("no queued figure")
		}
		n = *f.Queued
		return nil, nil
	})
	return n
}

// serverStepsPicture draws the steps top to bottom: each call, and under it the descriptor
// it returned or used, with what the kernel holds behind it.
func serverStepsPicture(st serverSteps) ([]byte, error) {
	roles := []string{"bound, before listen", "listener", "client", "accepted"}
	for _, role := range roles {
		if _, ok := st.Sockets[role]; !ok {
			return nil, fmt.Errorf("no %q socket", role)
		}
	}
	bound, lis, cli, acc := st.Sockets[roles[0]], st.Sockets[roles[1]], st.Sockets[roles[2]], st.Sockets[roles[3]]

	const w, left, fdX, fdW, bx = 860, 20, 40, 44, 110
	const bw = w - 20 - bx // the box behind a descriptor
	const mono, small, grey = `font-family="monospace"`, `font-size="13"`, `font-size="12" fill="#555555"`
	s := &svg{} // the body; its height is known once it is drawn
	s.text(w/2, 28, "middle", `font-weight="bold" font-size="16"`,
		"What the kernel holds after each step")
	s.text(w/2, 48, "middle", grey, "as three proofs of this run read it back (getsockname, "+
		"getpeername, TCP_INFO, SO_ACCEPTCONN), each on a listener of its own")
	s.arrowheads(8, arrowhead{"arrow", "#1565c0"})
	arrow := func(x1, y1, x2, y2 int, style string) {
		fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" %s stroke-width="2" `+
			`marker-end="url(#arrow)"/>`+"\n", x1, y1, x2, y2, style)
	}
	// step heads a step: its name, and the call as the proof made it.
	step := func(y int, title, call string) {
		s.text(left, y+16, "start", `font-weight="bold"`, title)
		s.text(left+170, y+16, "start", mono, call)
	}
	// fd draws a descriptor and the box of height bh behind it.
	fd := func(y, n, bh int, style string) {
		s.box(fdX, y+(bh-40)/2, fdW, 40, style)
		s.text(fdX+fdW/2, y+bh/2+6, "middle", mono+` font-weight="bold"`, fmt.Sprint(n))
		arrow(fdX+fdW, y+bh/2, bx-2, y+bh/2, `stroke="#1565c0"`)
		s.box(bx, y, bw, bh, style)
	}
	// addressed draws a step whose socket has an address: the call, the descriptor and its
	// box, with what the kernel reads back (mono) and says of it (small) in two lines. It
	// returns the top of the box.
	addressed := func(y int, title, call string, n int, style, addr, said string) int {
		step(y, title, call)
		y += 26
		fd(y, n, 56, style)
		s.text(bx+12, y+22, "start", mono, addr)
		s.text(bx+12, y+44, "start", small, said)
		return y
	}
	divider := func(y int, from string) {
		fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#bdbdbd" stroke-width="1"/>`+"\n",
			left, y, w-20, y)
		s.text(w-20, y+16, "end", grey, "from "+from)
	}
	family := "AF_INET6"
	if ap, err := netip.ParseAddrPort(lis.Local); err == nil && ap.Addr().Is4() {
		family = "AF_INET"
	}

	y := 62
	divider(y, fmt.Sprintf("passive.no-data: one socket, step by step; its listener %s", lis.Local))
	y += 24

	// 1. socket(): a descriptor, and a socket with nothing in it yet.
	step(y, "1. socket()", fmt.Sprintf("socket(%s, SOCK_STREAM) = %d", family, bound.FD))
	y += 26
	fd(y, bound.FD, 40, colMuted)
	s.text(bx+12, y+25, "start", "", "a TCP socket and nothing more: no address, no peer yet")
	y += 58

	// 2. bind(): an address and a port.
	y = addressed(y, "2. bind()", fmt.Sprintf("bind(%d, address)", bound.FD), bound.FD, colMuted,
		bound.Local, fmt.Sprintf("getsockname: its address and port; state %s, SO_ACCEPTCONN %d, "+
			"getpeername: %s", bound.State, bound.AcceptConn, bound.Peer))
	y += 74

	// 3. listen(): a passive socket, and its two queues.
	y = addressed(y, "3. listen()", fmt.Sprintf("listen(%d, backlog)", lis.FD), lis.FD, colSame,
		lis.Local, fmt.Sprintf("state %s, SO_ACCEPTCONN %d: passive, it takes connections and "+
			"nothing else", lis.State, lis.AcceptConn))
	qy, qw := y+66, (bw-14)/2
	ax := bx + qw + 14 // the accept queue's box
	s.box(bx, qy, qw, 76, colMuted)
	s.text(bx+12, qy+22, "start", `font-weight="bold"`, "the SYN queue")
	s.text(bx+12, qy+42, "start", small, "handshakes under way (SYN_RECV), up to the same limit;")
	cookies := "past it, SYN cookies"
	if st.SynCookies != "" {
		cookies += " (net.ipv4.tcp_syncookies " + st.SynCookies + ")"
	}
	s.text(bx+12, qy+62, "start", small, cookies)
	s.box(ax, qy, qw, 76, colSame)
	s.text(ax+12, qy+22, "start", `font-weight="bold"`, "the accept queue")
	s.text(ax+12, qy+42, "start", small, "handshakes done, waiting for accept()")
	slotX, slotY := ax+qw-12-110, qy+50
	if st.Queued >= 0 {
		s.text(ax+12, qy+62, "start", small, fmt.Sprintf("%d waiting here, this proof's client:",
			st.Queued))
	}
	if st.Queued > 0 {
		s.box(slotX, slotY, 110, 20, colDiff)
		s.text(slotX+55, slotY+15, "middle", mono+` font-size="12"`, portOf(cli.Local))
	}
	y = qy + 76
	if q := st.Queue; q != nil {
		s.text(bx, y+18, "start", grey, fmt.Sprintf("from backlog.queue, another listener (%s): "+
			"listen(fd, %d) read back a limit of %d (TCP_INFO),", q.Listener, q.Backlog, q.Max))
		s.text(bx, y+34, "start", grey, fmt.Sprintf("at most net.core.somaxconn (%d); "+
			"an accept queue holds limit + 1. Its length as clients came: %s", q.Somaxconn,
			serverLens(q.Lens)))
		y += 34
	}
	y += 22

	// The client's connect(): the kernel completes the handshake before any accept().
	y = addressed(y, "the client: connect()", fmt.Sprintf("connect(%d, %s) = 0", cli.FD, cli.Peer),
		cli.FD, colDiff, cli.Local+" → "+cli.Peer, fmt.Sprintf("state %s before any accept(): "+
			"its connection waits in the accept queue", cli.State))
	if st.Queued > 0 {
		arrow(slotX+55, y, slotX+55, slotY+22, `stroke="#e65100" stroke-dasharray="5 4"`)
	}
	y += 74

	// 4. accept(): a new descriptor, an active socket with its 4-tuple; the listener stays.
	y = addressed(y, "4. accept()", fmt.Sprintf("accept4(%d) = %d", lis.FD, acc.FD), acc.FD, colSame,
		acc.Local+" ↔ "+acc.Peer, fmt.Sprintf("state %s, SO_ACCEPTCONN %d: active, named by its "+
			"4-tuple; descriptor %d goes on listening", acc.State, acc.AcceptConn, lis.FD))
	y += 56

	// One more descriptor per accept, each connection its own 4-tuple.
	if sp := st.Spawned; sp != nil && len(st.Tuples) > 0 {
		y += 20
		divider(y, "passive.spawns-active: one descriptor per accept; its listener "+
			serverListenerOf(st.Tuples))
		y += 24
		s.text(left, y+16, "start", small, fmt.Sprintf("descriptors open: %d with listener %d; "+
			"%d after %d connect() calls (the clients' own; %d in the accept queue); "+
			"%d after as many accept4()", sp.Before, sp.Listener, sp.AfterConnect,
			sp.AfterConnect-sp.Before, sp.QueuedBefore, sp.AfterAccept))
		y += 30
		const n, gap = 8, 8
		cw := (w - 2*left - (n-1)*gap) / n
		var local netip.AddrPort
		for i, t := range st.Tuples[:min(len(st.Tuples), n)] {
			_, l, remote, err := tupleOf(t.Server)
			if err != nil {
				continue
			}
			local = l
			x := left + i*(cw+gap)
			s.box(x, y, cw, 50, colSame)
			s.text(x+cw/2, y+20, "middle", mono+` font-weight="bold"`,
				strings.TrimPrefix(t.Conn, "accept4 = "))
			s.text(x+cw/2, y+40, "middle", mono+` font-size="12"`, fmt.Sprintf("↔ :%d", remote.Port()))
		}
		y += 50
		if local.IsValid() {
			s.text(left, y+22, "start", small, fmt.Sprintf("each accept4() returned a descriptor of "+
				"its own; every one is local %s, the listener's, and only the client's port differs",
				local))
			y += 22
		}
	}
	out := newSVG(w, y+20, "socket, bind, listen, accept: what the kernel holds after each step")
	out.Write(s.Bytes())
	return out.bytes(), nil
}

// serverLens writes the accept queue's lengths as backlog.queue read them: "0, 1, 2, 3".
func serverLens(lens []uint32) string {
	var s []string
	for _, n := range lens {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ", ")
}

// serverListenerOf is the listener's address and port, the local end of the first accepted
// connection's tuple, or "" when there is none.
func serverListenerOf(tuples []evidence.TupleSeen) string {
	for _, t := range tuples {
		if _, l, _, err := tupleOf(t.Server); err == nil {
			return l.String()
		}
	}
	return ""
}

// The loop page's picture (chapters/loop.md): what a full descriptor table costs a loop that
// only retries accept4 (chapter 5's handshake.emfile-queued, its evidence.EntryCPUTime, an
// evidence.BusyLoop), beside refserver shedding with its spare descriptor (handshake.shed, its
// EntryCPUTime, an evidence.CPUWindow, and its figures).

// shedFigures are the figures handshake.shed cited that the picture shows.
type shedFigures struct {
	Limit         int     `json:"limit"`
	Served        int     `json:"served"`
	Shed          int     `json:"shed"`
	FinAfterAckUS int64   `json:"fin_after_ack_us"`
	WindowClients int     `json:"window_clients"`
	WindowS       float64 `json:"window_s"`
}

// loopPictures draws loop-spare.svg, or its placeholder with the reason.
func loopPictures(byID map[string]proof, pics map[string][]byte, missing notes) {
	const name = "loop-spare.svg"
	var spin evidence.BusyLoop
	var shed evidence.CPUWindow
	var f shedFigures
	var err error
	switch {
	case !decodeFirst(byID["handshake.emfile-queued"], evidence.EntryCPUTime, &spin):
		err = fmt.Errorf("handshake.emfile-queued has no %s evidence", evidence.EntryCPUTime)
	case !decodeFirst(byID["handshake.shed"], evidence.EntryCPUTime, &shed):
		err = fmt.Errorf("handshake.shed has no %s evidence", evidence.EntryCPUTime)
	case !decodeFirst(byID["handshake.shed"], evidence.EntryFigures, &f):
		err = fmt.Errorf("handshake.shed cited no figures")
	}
	if err != nil {
		why := "chapter 5's proofs recorded no CPU time in this run (" + err.Error() + "): " +
			"they need a private network namespace, which root or an unprivileged user namespace gives."
		pics[name], missing[name] = placeholder("A full descriptor table: spinning and shedding", why), why
		return
	}
	pics[name] = spareCPUPicture(spin, shed, f)
}

// spareCPUPicture draws the two loops' CPU as bars on one scale, a core's worth of time.
func spareCPUPicture(spin evidence.BusyLoop, shed evidence.CPUWindow, f shedFigures) []byte {
	const w, x0, x1 = 860, 40, 820
	const small, grey = `font-size="13"`, `font-size="12" fill="#555555"`
	s := newSVG(w, 330, "A full descriptor table: a loop that retries accept4, and refserver shedding")
	s.text(w/2, 28, "middle", `font-weight="bold" font-size="16"`,
		"A full descriptor table: retrying accept4 spins, shedding sleeps")
	s.text(w/2, 48, "middle", grey, "CPU time by getrusage over each window, "+
		"as a share of one core (the Go runtime's own threads included)")
	px := func(pct float64) int { return x0 + int(math.Round(min(max(pct, 0), 100)*float64(x1-x0)/100)) }
	bar := func(y int, title, from string, pct float64, style string, lines ...string) {
		s.text(x0, y, "start", `font-weight="bold"`, title)
		s.text(x1, y, "end", grey, "from "+from)
		s.box(x0, y+10, x1-x0, 30, colMuted)
		s.box(x0, y+10, max(px(pct)-x0, 4), 30, style)
		label := fmt.Sprintf("%.1f%% of a core", pct)
		if px(pct) > x0+200 {
			s.text(px(pct)-10, y+31, "end", `font-weight="bold"`, label)
		} else {
			s.text(px(pct)+10, y+31, "start", `font-weight="bold"`, label)
		}
		for i, l := range lines {
			s.text(x0, y+60+i*18, "start", small, l)
		}
	}
	bar(86, "A loop that only retries accept4", "handshake.emfile-queued", spin.Percent, colDiff,
		fmt.Sprintf("%s epoll_wait calls in %.2f s, each allowed to sleep %d ms: every one returned the "+
			"listener", grouped(spin.EpollWaits), float64(spin.WindowUS)/1e6, spin.TimeoutMS),
		fmt.Sprintf("ready at once, and all %s accept4 calls after them failed with EMFILE; "+
			"the client was told nothing", grouped(spin.AcceptEMFILE)))
	bar(206, "refserver, with its spare descriptor", "handshake.shed", shed.Percent, colSame,
		fmt.Sprintf("RLIMIT_NOFILE %d: %d clients served, %d shed, each with FIN %d µs after its "+
			"handshake's last ACK;", f.Limit, f.Served, f.Shed, f.FinAfterAckUS),
		fmt.Sprintf("the window: %d clients arriving in %.2f s, server and clients in one process",
			f.WindowClients, f.WindowS))
	for _, pct := range []float64{0, 50, 100} {
		x := px(pct)
		fmt.Fprintf(s, `<line x1="%d" y1="300" x2="%d" y2="306" stroke="#9e9e9e"/>`+"\n", x, x)
		s.text(x, 322, "middle", grey, fmt.Sprintf("%.0f%%", pct))
	}
	fmt.Fprintf(s, `<line x1="%d" y1="300" x2="%d" y2="300" stroke="#9e9e9e"/>`+"\n", x0, x1)
	return s.bytes()
}
