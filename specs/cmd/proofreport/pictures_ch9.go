package main

import (
	"fmt"
	"strings"

	"portproof/specs/evidence"
)

// Chapter 9's picture, drawn from the evidence ch09_dual_stack_test.go records under
// evidence.EntryDualStack, an evidence.DualStack: once from a sandbox with
// net.ipv6.bindv6only 0 and IPV6_V6ONLY left off, once with Config.V6Only.

// dualStackPictures draws dual-stack.svg.
func dualStackPictures(byID map[string]proof, pics map[string][]byte, missing notes) {
	const name = "dual-stack.svg"
	off, on := dualStackRun(byID["dualstack.mapped"], 0), dualStackRun(byID["dualstack.v6only"], 1)
	if off == nil || on == nil {
		why := "dualstack.mapped and dualstack.v6only recorded no listeners in this run: " +
			"both need a private network namespace, which root or an unprivileged user namespace gives."
		pics[name], missing[name] = placeholder("One port, two families", why), why
		return
	}
	pics[name] = dualStackPicture(*off, *on)
}

// dualStackRun is p's first passed dualstack entry whose [::] listener had IPV6_V6ONLY
// v, IPv4's first; nil when there is none.
func dualStackRun(p proof, v int) *evidence.DualStack {
	var run *evidence.DualStack
	fromSpecs(p, evidence.EntryDualStack, func(e reportEntry) ([]byte, error) {
		var d evidence.DualStack
		if err := e.decode(&d); err != nil || d.Wildcard6.V6Only == nil || *d.Wildcard6.V6Only != v {
			return nil, fmt.Errorf("not the IPV6_V6ONLY %d run", v)
		}
		run = &d
		return nil, nil
	})
	return run
}

// dualStackPicture draws the two runs side by side: on the left one AF_INET6 listener takes
// both families and 0.0.0.0 is refused; on the right two listeners share the port.
func dualStackPicture(off, on evidence.DualStack) []byte {
	s := newSVG(900, 400, "One port, two families: a listener on [::] with IPV6_V6ONLY off, and on")
	s.text(450, 28, "middle", `font-weight="bold" font-size="16"`, "One port, two families")
	s.arrowheads(8, arrowhead{"ds-arrow", "#1565c0"})
	arrow := func(x1, y1, x2, y2 int) {
		fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#1565c0" stroke-width="2" marker-end="url(#ds-arrow)"/>`+"\n", x1, y1, x2, y2)
	}
	refused := func(x, y int, what string) {
		s.box(x, y, 190, 40, colDiff)
		s.text(x+95, y+25, "middle", `font-family="monospace" font-size="13"`, what)
	}
	client := func(x, y int, c evidence.DualStackClient) {
		s.box(x, y, 190, 40, colMuted)
		s.text(x+95, y+17, "middle", `font-size="12" fill="#555555"`, familyWord(c.Domain)+" client")
		own := c.To
		if parts := strings.Fields(c.Tuple); len(parts) == 4 {
			own = parts[1]
		}
		s.text(x+95, y+33, "middle", `font-family="monospace" font-size="13"`, own)
	}
	listener := func(x, y int, l evidence.DualStackListener, v6only string) {
		s.box(x, y, 210, 54, colSame)
		s.text(x+105, y+22, "middle", `font-family="monospace" font-weight="bold"`, l.Addr)
		s.text(x+105, y+42, "middle", `font-size="12"`, fmt.Sprintf("%s%s, accepted %d", l.Domain, v6only, l.Accepted))
	}

	// IPV6_V6ONLY 0.
	s.text(225, 62, "middle", `font-weight="bold"`, fmt.Sprintf("IPV6_V6ONLY 0 (net.ipv6.bindv6only %s)", off.BindV6Only))
	if len(off.Clients) >= 2 {
		v4, v6 := off.Clients[0], off.Clients[1]
		client(10, 90, v4)
		client(10, 170, v6)
		listener(230, 120, off.Wildcard6, ", V6ONLY 0")
		arrow(200, 110, 230, 140)
		arrow(200, 190, 230, 160)
		s.text(225, 236, "middle", `font-size="13"`, "the server's end sees the IPv4 client as")
		s.text(225, 256, "middle", `font-family="monospace" font-weight="bold"`, v4.SeenAs)
	}
	refused(130, 290, "bind "+off.Wildcard4.Asked)
	s.text(225, 352, "middle", `font-size="13"`, fmt.Sprintf("refserver beside it: %s", off.Wildcard4.Errno))

	fmt.Fprint(s, `<line x1="450" y1="50" x2="450" y2="370" stroke="#9e9e9e" stroke-width="1" stroke-dasharray="4 3"/>`+"\n")

	// IPV6_V6ONLY 1.
	s.text(675, 62, "middle", `font-weight="bold"`, "IPV6_V6ONLY 1 (Config.V6Only)")
	if len(on.Clients) >= 3 {
		before, v6, after := on.Clients[0], on.Clients[1], on.Clients[2]
		client(470, 90, v6)
		listener(680, 84, on.Wildcard6, ", V6ONLY 1")
		arrow(660, 110, 680, 110)
		refused(470, 150, "connect: "+before.Errno)
		s.text(565, 206, "middle", `font-size="12"`, "an IPv4 client, while [::] was alone")
		client(470, 240, after)
		listener(680, 234, on.Wildcard4, "")
		arrow(660, 260, 680, 260)
		s.text(785, 310, "middle", `font-size="13"`, "seen as "+after.SeenAs)
	}
	s.text(675, 352, "middle", `font-size="13"`, "both listeners on one port, each its own family")
	return s.bytes()
}

func familyWord(domain string) string {
	switch domain {
	case "AF_INET":
		return "IPv4"
	case "AF_INET6":
		return "IPv6"
	}
	return domain
}
