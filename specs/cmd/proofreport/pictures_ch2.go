package main

import (
	"fmt"
	"net/netip"
	"slices"

	"portproof/specs/evidence"
)

// Chapter 2's picture: one listener and the sockets accept() returned, all on its port, each
// with its client's port, from port.same's evidence.

// onePortAlt is the picture's text for a reader who cannot see it.
const onePortAlt = "One listener and the sockets accept() returned: every one on the listener's " +
	"address and port, each with its own client's port"

// onePortPicture draws port.same's connections into pics, IPv4 first, or a placeholder and
// the reason in missing.
func onePortPicture(p proof, pics map[string][]byte, missing notes) {
	const name = "port-same.svg"
	b, err := onePortFromSpecs(p, func(s specReport) ([]byte, error) {
		var conns []evidence.TupleSeen
		if err := onePortEntry(s, evidence.EntryTuples, &conns); err != nil {
			return nil, err
		}
		var server evidence.ServerSockets
		if err := onePortEntry(s, evidence.EntryServerSockets, &server); err != nil {
			server = evidence.ServerSockets{} // a report from before the descriptors were recorded
		}
		return onePortSVG(conns, server)
	})
	if err != nil {
		why := "port.same recorded no connections in this run (" + err.Error() + ")."
		pics[name] = placeholder("One listening port, many connections", why)
		if len(p.Specs) > 0 { // with no spec at all, the page says so under the claim
			missing[name] = why
		}
		return
	}
	pics[name] = b
}

// onePortFromSpecs draws from the first passed spec of p that draw works on, IPv4 first:
// fromSpecs, for a picture that needs more than one of a spec's entries.
func onePortFromSpecs(p proof, draw func(specReport) ([]byte, error)) ([]byte, error) {
	if len(p.Specs) == 0 {
		return nil, fmt.Errorf("no spec")
	}
	err := fmt.Errorf("no spec passed")
	for _, s := range p.passed() {
		b, derr := draw(s)
		if derr == nil {
			return b, nil
		}
		err = derr
	}
	return nil, err
}

// onePortEntry decodes s's first entry named name into v.
func onePortEntry(s specReport, name string, v any) error {
	es := s.entries(name)
	if len(es) == 0 {
		return fmt.Errorf("no %q evidence", name)
	}
	return es[0].decode(v)
}

// onePortRow is one accepted socket as the server's kernel reports it.
type onePortRow struct {
	fd           int // 0 when the report has no descriptors
	state        string
	local, peer  netip.AddrPort
	sameAsListen bool
}

// The picture shows this many accepted sockets at most; past that it shows the first ones,
// a row that says how many are left out, and the last one.
const onePortMaxRows = 16

// onePortSVG draws the listener above its accepted sockets: for each, the descriptor
// accept4 returned, its local end (getsockname), its state and its peer (getpeername).
func onePortSVG(conns []evidence.TupleSeen, server evidence.ServerSockets) ([]byte, error) {
	if len(conns) == 0 {
		return nil, fmt.Errorf("no connections")
	}
	byConn := map[string]int{}
	for i, a := range server.Accepted {
		byConn[a.Conn] = i
	}
	listener := server.Listener.Addr
	var rows []onePortRow
	for _, c := range conns {
		_, local, peer, err := tupleOf(c.Server)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Conn, err)
		}
		r := onePortRow{local: local, peer: peer}
		if i, ok := byConn[c.Conn]; ok {
			r.fd, r.state = server.Accepted[i].FD, server.Accepted[i].State
		}
		if listener == "" {
			listener = local.String() // no listener in the report: the first socket's end
		}
		r.sameAsListen = local.String() == listener
		rows = append(rows, r)
	}

	shown := rows
	left := 0
	if len(rows) > onePortMaxRows {
		shown = append(slices.Clone(rows[:onePortMaxRows-2]), rows[len(rows)-1])
		left = len(rows) - len(shown)
	}
	const top, step = 124, 26
	nRows := len(shown)
	if left > 0 {
		nRows++
	}
	h := top + nRows*step + 70
	s := newSVG(740, h, "One listener and the sockets accept() returned: one port, a client port each")
	s.text(370, 26, "middle", `font-weight="bold" font-size="16"`,
		"One listening port: every accepted socket is on it, each with its own client")

	// Columns: descriptor, local end, state, then the peer across the connection.
	const xFD, xLocal, wLocal, xState, xPeer, wPeer = 28, 100, 180, 285, 520, 190
	head := `font-size="12" fill="#555555"`
	s.text(xFD+30, 52, "middle", head, "descriptor")
	s.text(xLocal+wLocal/2, 52, "middle", head, "its own end (getsockname)")
	s.text(xState+60, 52, "middle", head, "state (TCP_INFO)")
	s.text(xPeer+wPeer/2, 52, "middle", head, "the client's end (getpeername)")

	// The listener, passive: it holds the port and hands out connections.
	lfd := "listener"
	if server.Listener.FD > 0 {
		lfd = fmt.Sprintf("fd %d", server.Listener.FD)
	}
	s.text(xFD+30, 84, "middle", `font-family="monospace" font-weight="bold"`, lfd)
	s.box(xLocal, 64, wLocal, 30, colSame)
	s.text(xLocal+wLocal/2, 84, "middle", `font-family="monospace" font-weight="bold"`, listener)
	lstate := server.Listener.State
	if lstate == "" {
		lstate = "listening"
	}
	s.text(xState+60, 84, "middle", `font-family="monospace"`, lstate)
	s.text(xPeer+wPeer/2, 84, "middle", `font-style="italic" fill="#555555"`,
		"none: it only accepts")
	s.text(xFD, 114, "start", `font-size="12" fill="#555555"`, "accept4() returned:")
	// A rail from the listener down to every socket it handed out.
	railX := xFD - 14
	lastY := top + (nRows-1)*step + 13
	fmt.Fprintf(s, `<line x1="%d" y1="94" x2="%d" y2="%d" stroke="#1565c0" stroke-width="2"/>`+"\n",
		railX, railX, lastY)
	fmt.Fprintf(s, `<line x1="%d" y1="79" x2="%d" y2="79" stroke="#1565c0" stroke-width="2"/>`+"\n",
		railX, xFD+2)
	fmt.Fprintf(s, `<line x1="%d" y1="79" x2="%d" y2="94" stroke="#1565c0" stroke-width="2"/>`+"\n",
		railX, railX)

	y := top
	drawRow := func(r onePortRow) {
		fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#1565c0" stroke-width="2"/>`+"\n",
			railX, y+13, xFD+2, y+13)
		fd := "accepted"
		if r.fd > 0 {
			fd = fmt.Sprintf("fd %d", r.fd)
		}
		s.text(xFD+30, y+18, "middle", `font-family="monospace"`, fd)
		style := colSame
		if !r.sameAsListen {
			style = colDiff
		}
		s.box(xLocal, y+2, wLocal, 22, style)
		s.text(xLocal+wLocal/2, y+18, "middle", `font-family="monospace"`, r.local.String())
		s.text(xState+60, y+18, "middle", `font-family="monospace" font-size="13"`, r.state)
		fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9e9e9e" stroke-width="2"/>`+"\n",
			xState+125, y+13, xPeer-6, y+13)
		s.box(xPeer, y+2, wPeer, 22, colDiff)
		s.text(xPeer+wPeer/2, y+18, "middle", `font-family="monospace"`, r.peer.String())
		y += step
	}
	for i, r := range shown {
		if left > 0 && i == len(shown)-1 {
			s.text(xLocal+wLocal/2, y+18, "middle", `font-style="italic" fill="#555555"`,
				fmt.Sprintf("… %d more, the same way …", left))
			y += step
		}
		drawRow(r)
	}

	// The caption says what the rows show, counted from them.
	same, ports := 0, map[uint16]bool{}
	var low, high uint16
	for i, r := range rows {
		if r.sameAsListen {
			same++
		}
		ports[r.peer.Port()] = true
		if p := r.peer.Port(); i == 0 || p < low {
			low = p
		}
		if p := r.peer.Port(); p > high {
			high = p
		}
	}
	s.text(370, y+28, "middle", "", fmt.Sprintf(
		"%d of %d accepted sockets on %s, the listener's own address and port (blue);",
		same, len(rows), listener))
	s.text(370, y+50, "middle", "", fmt.Sprintf(
		"%d different client ports (orange), %d to %d: they are what tells the connections apart.",
		len(ports), low, high))
	return s.bytes(), nil
}
