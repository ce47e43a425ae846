package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"portproof/specs/evidence"
)

// Chapter 3's pictures, one per proof, drawn from the evidence ch03_limits_test.go records
// (specs/evidence/limits.go): port-space.svg, the 16-bit port space with the ephemeral range
// in it and the narrowed range limit.per-destination spent toward one destination
// (port_range_default, port_range, port_batches); port-multiply.svg, the batches of
// limit.multiply, each toward a 4-tuple of its own (port_range, port_batches).

// portEvidence is what one spec of a limit proof recorded: the narrowed range its sandbox
// read back, the batches in the order they ran, and (limit.per-destination only) the
// kernel's default range.
type portEvidence struct {
	Narrow  evidence.PortRange
	Batches []evidence.PortBatch
	Default *evidence.PortRange
}

// portPictures draws port-space.svg and port-multiply.svg into pics, and says in missing
// what a run left out.
func portPictures(r suiteReport, byID map[string]proof, pics map[string][]byte, missing notes) {
	low, high := hostRange(r)
	one, ok := portEvidenceOf(byID["limit.per-destination"])
	pics["port-space.svg"] = portSpacePicture(int(low), int(high), one)
	if !ok {
		missing["port-space.svg"] = "limit.per-destination recorded no ports toward its " +
			"destination in this run: the picture shows the range alone."
	}
	many, ok := portEvidenceOf(byID["limit.multiply"])
	if b, err := portMultiplyPicture(many); ok && err == nil {
		pics["port-multiply.svg"] = b
	} else {
		why := "limit.multiply recorded no batches of ports in this run: " +
			"it needs a private network namespace, which root or an unprivileged user namespace gives."
		if err != nil && ok {
			why = "limit.multiply's batches could not be drawn (" + err.Error() + ")."
		}
		pics["port-multiply.svg"], missing["port-multiply.svg"] = placeholder("The same ports, again per 4-tuple", why), why
	}
}

// portEvidenceOf reads the first spec of p, passed ones first and IPv4 before IPv6, that
// recorded batches of ports.
func portEvidenceOf(p proof) (portEvidence, bool) {
	ordered := slices.Clone(p.Specs)
	slices.SortStableFunc(ordered, func(a, b specReport) int {
		if pa, pb := a.State == "passed", b.State == "passed"; pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		return strings.Compare(a.family(), b.family()) // "" < "ipv4" < "ipv6"
	})
	for _, s := range ordered {
		var ev portEvidence
		for _, e := range s.entries(evidence.EntryPortBatches) {
			var bs []evidence.PortBatch
			if e.decode(&bs) == nil && len(bs) > 0 {
				ev.Batches = bs
				break
			}
		}
		if len(ev.Batches) == 0 {
			continue
		}
		for _, e := range s.entries(evidence.EntryPortRange) {
			if e.decode(&ev.Narrow) == nil && ev.Narrow.Size > 0 {
				break
			}
		}
		if ev.Narrow.Size == 0 {
			for _, b := range ev.Batches {
				ev.Narrow.Size = max(ev.Narrow.Size, len(b.Ports))
			}
		}
		for _, e := range s.entries(evidence.EntryPortRangeDefault) {
			var d evidence.DefaultRange
			if e.decode(&d) == nil && d.KernelDefault.Size > 0 {
				ev.Default = &d.KernelDefault
			}
		}
		return ev, true
	}
	return portEvidence{}, false
}

// batchSource is the address b's connections came from: as the client's kernel held the
// first of them, else the address its sockets were bound to, else "unbound".
func batchSource(b evidence.PortBatch) string {
	for _, t := range b.Tuples {
		if _, local, _, err := tupleOf(t); err == nil {
			return local.Addr().String()
		}
	}
	if ap, err := netip.ParseAddrPort(b.From); err == nil {
		return ap.Addr().String()
	}
	if b.From != "" {
		return b.From
	}
	return "unbound"
}

// batchRefusal is how b ended, "connect: EADDRNOTAVAIL", or "" when the evidence does not
// say.
func batchRefusal(b evidence.PortBatch) string {
	switch {
	case b.Refused.Errno == "":
		return ""
	case b.Refused.Call == "":
		return b.Refused.Errno
	}
	return b.Refused.Call + ": " + b.Refused.Errno
}

// portSpacePicture draws the 16-bit port space with the host's ephemeral range in it, and,
// when limit.per-destination ran, the narrowed range it spent toward one destination: each
// port with the number of the connect() that got it, and the connect() that was refused.
func portSpacePicture(low, high int, ev portEvidence) []byte {
	var b *evidence.PortBatch
	if len(ev.Batches) > 0 {
		b = &ev.Batches[0]
	}
	h := 170
	if ev.Default != nil && (int(ev.Default.Low) != low || int(ev.Default.High) != high) {
		h += 22
	}
	slots := ev.Narrow.Size > 0 && ev.Narrow.High > 0 && ev.Narrow.Size <= 24
	if b != nil {
		h += 60 + 130
	}
	title := "The port space: 65,536 port numbers, and the ephemeral range connect() picks from"
	if b != nil {
		title += "; a narrowed range spent toward one destination"
	}
	s := newSVG(860, h, title)
	s.text(430, 26, "middle", `font-weight="bold" font-size="16"`,
		"Source ports toward one destination come from one range")
	const x0, width = 40, 780
	px := func(p int) int { return x0 + p*width/65536 }
	s.box(x0, 50, width, 40, colMuted)
	s.box(px(low), 50, px(high+1)-px(low), 40, colSame)
	s.text(px(low)+(px(high+1)-px(low))/2, 76, "middle", `font-weight="bold"`, fmt.Sprintf("%d-%d", low, high))
	s.text(x0, 110, "start", `font-size="12"`, "0")
	s.text(x0+width, 110, "end", `font-size="12"`, "65535")
	s.text(430, 140, "middle", "", fmt.Sprintf("ip_local_port_range on this machine: %d source ports per "+
		"(source address, destination address, destination port), not 65,536", high-low+1))
	y := 140
	if ev.Default != nil && (int(ev.Default.Low) != low || int(ev.Default.High) != high) {
		y += 22
		s.text(430, y, "middle", `font-size="13" fill="#555555"`, fmt.Sprintf(
			"a new network namespace starts with %d-%d, %d ports", ev.Default.Low, ev.Default.High, ev.Default.Size))
	}
	if b == nil {
		return s.bytes()
	}

	// The proof's own part, apart from the range above.
	y += 28
	fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9e9e9e" stroke-width="1"/>`+"\n", x0, y, x0+width, y)
	y += 26
	s.text(x0, y, "start", `font-weight="bold"`, "limit.per-destination: one client, one destination, in a sandbox")
	y += 20
	s.text(x0, y, "start", `font-size="14" fill="#555555"`, fmt.Sprintf("the range narrowed to %s; "+
		"connect() from %s to %s until the kernel refused", rangeText(ev.Narrow), batchSource(*b), b.To))
	y += 12
	order := map[uint16]int{}
	for i, p := range b.Ports {
		if _, dup := order[p]; !dup {
			order[p] = i + 1
		}
	}
	refused := batchRefusal(*b)
	if !slots {
		// Too many ports for a box each: one bar, spent against the range.
		bw := 600
		s.box(x0, y+8, bw, 30, colMuted)
		used := bw
		if len(b.Ports) < ev.Narrow.Size {
			used = bw * len(b.Ports) / ev.Narrow.Size
		}
		s.box(x0, y+8, used, 30, colDiff)
		s.text(x0+bw/2, y+28, "middle", `font-size="13"`, fmt.Sprintf("%d connect() calls got a port, of %d", len(b.Ports), ev.Narrow.Size))
		if refused != "" {
			s.text(x0+bw+14, y+28, "start", `font-size="13"`, fmt.Sprintf("the next: %s", refused))
		}
		return s.bytes()
	}
	n := ev.Narrow.Size
	const gap = 6
	slot := min(60, (width-110-gap*n)/n)
	for i := range n {
		p := int(ev.Narrow.Low) + i
		x := x0 + i*(slot+gap)
		k, spent := order[uint16(p)]
		style := colMuted
		if spent {
			style = colDiff
		}
		s.box(x, y+8, slot, 50, style)
		s.text(x+slot/2, y+28, "middle", `font-family="monospace" font-size="13"`, fmt.Sprint(p))
		if spent {
			s.text(x+slot/2, y+49, "middle", `font-size="13"`, fmt.Sprintf("#%d", k))
		}
	}
	if refused != "" {
		x := x0 + n*(slot+gap) + 10
		fmt.Fprintf(s, `<rect x="%d" y="%d" width="%d" height="50" rx="6" fill="#ffebee" stroke="#c62828" stroke-width="1.5" stroke-dasharray="4 3"/>`+"\n",
			x, y+8, x0+width-x)
		s.text(x+(x0+width-x)/2, y+28, "middle", `font-size="13"`, fmt.Sprintf("#%d", len(b.Ports)+1))
		s.text(x+(x0+width-x)/2, y+49, "middle", `font-size="12" font-family="monospace"`, b.Refused.Errno)
	}
	y += 88
	caption := fmt.Sprintf("#k: the k-th connect() got that port; #%d found no port left", len(b.Ports)+1)
	if refused == "" {
		caption = "#k: the k-th connect() got that port"
	}
	s.text(x0, y, "start", `font-size="14"`, caption)
	if run, want := sameParityRun(b.Ports, ev.Narrow.Low), parityCount(b.Ports, ev.Narrow.Low); run > 1 && run == want {
		s.text(x0, y+22, "start", `font-size="14"`, fmt.Sprintf("the first %d were %s, like %d, the range's low end; "+
			"the other parity came after", run, evidence.ParityName(ev.Narrow.Low), ev.Narrow.Low))
	}
	return s.bytes()
}

// portMultiplyPicture draws limit.multiply's batches in their two groups: the destinations
// and sources that each changed one element of the 4-tuple, then the batches whose port
// bind() or connect() chose from a bound address (the first batch whose port bind chose
// starts that group).
func portMultiplyPicture(ev portEvidence) ([]byte, error) {
	if len(ev.Batches) == 0 {
		return nil, fmt.Errorf("no batches")
	}
	split := len(ev.Batches)
	for i, b := range ev.Batches {
		if b.PortBy == "bind" {
			split = i
			break
		}
	}
	groups := [][]evidence.PortBatch{ev.Batches[:split], ev.Batches[split:]}
	heads := []string{"Each new 4-tuple gets the whole range again", "Who picks the port: bind(), per address, or connect(), per 4-tuple"}
	notes := []string{"each batch changes one element of the first one's 4-tuple",
		"each socket bound to a client address first; each name ends with the call that chose the port"}
	const x0, width, row = 40, 780, 46
	h := 70
	for _, g := range groups {
		if len(g) > 0 {
			h += 76 + len(g)*row
		}
	}
	h += 30
	s := newSVG(860, h, "limit.multiply: source ports spent per 4-tuple, batch by batch")
	s.text(430, 26, "middle", `font-weight="bold" font-size="16"`, "The same source ports, again for every 4-tuple")
	s.text(430, 50, "middle", `font-size="14" fill="#555555"`, fmt.Sprintf("limit.multiply, in a sandbox with the range narrowed to %s: "+
		"each batch connects until the kernel refuses", rangeText(ev.Narrow)))
	y := 70
	const lx, bx, bw = 330, 345, 290
	for gi, g := range groups {
		if len(g) == 0 {
			continue
		}
		if gi > 0 {
			fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9e9e9e" stroke-width="1"/>`+"\n", x0, y, x0+width, y)
		}
		s.text(x0, y+26, "start", `font-weight="bold"`, heads[gi])
		s.text(x0, y+44, "start", `font-size="13" fill="#555555"`, notes[gi])
		y += 60
		for _, b := range g {
			s.text(lx, y+14, "end", `font-size="14"`, b.Batch)
			s.text(lx, y+31, "end", `font-size="12" font-family="monospace" fill="#555555"`, batchSource(b)+" → "+b.To)
			s.box(bx, y+4, bw, 26, colMuted)
			if len(b.Ports) > 0 {
				used := bw
				if ev.Narrow.Size > 0 && len(b.Ports) < ev.Narrow.Size {
					used = bw * len(b.Ports) / ev.Narrow.Size
				}
				s.box(bx, y+4, used, 26, colDiff)
			}
			s.text(bx+bw/2, y+22, "middle", `font-size="13"`, fmt.Sprintf("%d of %d", len(b.Ports), ev.Narrow.Size))
			if r := batchRefusal(b); r != "" {
				s.text(bx+bw+12, y+22, "start", `font-size="12" font-family="monospace"`, r)
			}
			y += row
		}
		y += 16
	}
	if same := samePorts(ev.Batches); same > 1 {
		s.text(x0, y+10, "start", `font-size="14"`, fmt.Sprintf("the %d batches that connected all used the same %d port numbers",
			same, ev.Narrow.Size))
	}
	return s.bytes(), nil
}

// samePorts counts the batches that got ports, when all of them got the same set; 0 when
// two differ.
func samePorts(bs []evidence.PortBatch) int {
	var first []uint16
	n := 0
	for _, b := range bs {
		if len(b.Ports) == 0 {
			continue
		}
		ps := slices.Sorted(slices.Values(b.Ports))
		if first == nil {
			first = ps
		} else if !slices.Equal(first, ps) {
			return 0
		}
		n++
	}
	return n
}

func rangeText(r evidence.PortRange) string {
	if r.High == 0 {
		return fmt.Sprintf("%d ports", r.Size)
	}
	return r.String()
}

// sameParityRun counts the ports at the start of ports with the parity of like.
func sameParityRun(ports []uint16, like uint16) int {
	for i, p := range ports {
		if p%2 != like%2 {
			return i
		}
	}
	return len(ports)
}

// parityCount counts the ports with the parity of like.
func parityCount(ports []uint16, like uint16) int {
	n := 0
	for _, p := range ports {
		if p%2 == like%2 {
			n++
		}
	}
	return n
}
