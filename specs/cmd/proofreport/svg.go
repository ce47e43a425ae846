package main

import (
	"bytes"
	"fmt"
	"html"
	"net/netip"
	"strconv"
	"strings"

	"portproof/specs/evidence"
)

// The pictures are SVG written by hand: plain shapes and text in the reader's own sans-serif
// font, no script, no stylesheet, nothing fetched from anywhere.

const (
	colSame  = `fill="#e3f2fd" stroke="#1565c0"`
	colDiff  = `fill="#ffe0b2" stroke="#e65100"`
	colMuted = `fill="#eeeeee" stroke="#9e9e9e"`
	ink      = "#212121"
)

type svg struct {
	bytes.Buffer
	w, h int
}

func newSVG(w, h int, title string) *svg {
	s := &svg{w: w, h: h}
	fmt.Fprintf(s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" font-family="sans-serif" font-size="14" fill="%s">`+"\n", w, h, w, h, ink)
	fmt.Fprintf(s, "<title>%s</title>\n", esc(title))
	fmt.Fprintf(s, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", w, h)
	return s
}

func esc(s string) string { return html.EscapeString(s) }

func (s *svg) text(x, y int, anchor, attrs, t string) {
	fmt.Fprintf(s, `<text x="%d" y="%d" text-anchor="%s" %s>%s</text>`+"\n", x, y, anchor, attrs, esc(t))
}

func (s *svg) box(x, y, w, h int, style string) {
	fmt.Fprintf(s, `<rect x="%d" y="%d" width="%d" height="%d" rx="6" %s stroke-width="1.5"/>`+"\n", x, y, w, h, style)
}

// lifeline draws an end's time line, a client's or a server's, down from top to bottom at x:
// the segments of the pictures that tell a story in time go from one to the other.
func (s *svg) lifeline(x, top, bottom int) {
	fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9e9e9e" stroke-width="2"/>`+"\n", x, top, x, bottom)
}

// arrowhead is a marker an arrow ends in, marker-end="url(#id)": a triangle filled with colour.
type arrowhead struct{ id, colour string }

// arrowheads defines the picture's arrowheads, each size px wide and high, pointing along
// the line they end.
func (s *svg) arrowheads(size int, heads ...arrowhead) {
	s.WriteString("<defs>")
	for _, h := range heads {
		fmt.Fprintf(s, `<marker id="%s" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="%d" `+
			`markerHeight="%d" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="%s"/></marker>`,
			h.id, size, size, h.colour)
	}
	s.WriteString("</defs>\n")
}

func (s *svg) bytes() []byte {
	s.WriteString("</svg>\n")
	return s.Bytes()
}

// grouped writes n with a comma between each group of three digits: 36,913.
func grouped(n int) string {
	d := strconv.Itoa(n)
	if n < 0 {
		return "-" + grouped(-n)
	}
	for i := len(d) - 3; i > 0; i -= 3 {
		d = d[:i] + "," + d[i:]
	}
	return d
}

// placeholder is the picture for evidence this run did not produce, with the reason.
func placeholder(title, why string) []byte {
	s := newSVG(720, 120, title)
	s.box(10, 10, 700, 100, colMuted)
	s.text(360, 52, "middle", `font-weight="bold"`, title)
	s.text(360, 80, "middle", "", why)
	return s.bytes()
}

// tupleOf parses sock.Tuple.String(): "tcp 127.0.0.1:40512 -> 127.0.0.1:7000".
func tupleOf(t string) (proto string, local, remote netip.AddrPort, err error) {
	f := strings.Fields(t)
	if len(f) != 4 || f[2] != "->" {
		return "", local, remote, fmt.Errorf("%q: not a tuple", t)
	}
	if local, err = netip.ParseAddrPort(f[1]); err != nil {
		return "", local, remote, err
	}
	remote, err = netip.ParseAddrPort(f[3])
	return f[0], local, remote, err
}

// tuplePicture draws two connections' 5-tuples side by side, as the client's kernel reports
// them, and marks the elements that differ.
func tuplePicture(conns []evidence.TupleSeen) ([]byte, error) {
	if len(conns) < 2 {
		return nil, fmt.Errorf("want two connections, have %d", len(conns))
	}
	var rows [2][5]string
	for i, c := range conns[:2] {
		p, l, r, err := tupleOf(c.Client)
		if err != nil {
			return nil, err
		}
		rows[i] = [5]string{p, l.Addr().String(), strconv.Itoa(int(l.Port())), r.Addr().String(), strconv.Itoa(int(r.Port()))}
	}
	heads := [5]string{"protocol", "source address", "source port", "destination address", "destination port"}
	s := newSVG(860, 250, "The 5-tuples of two connections from one client to one listener")
	s.text(430, 26, "middle", `font-weight="bold" font-size="16"`, "Two connections, one client, one listening port")
	const x0, cw, gap = 150, 130, 8
	differs := 0
	for j, h := range heads {
		x := x0 + j*(cw+gap)
		s.text(x+cw/2, 62, "middle", `font-size="13" fill="#555555"`, h)
		same := rows[0][j] == rows[1][j]
		if !same {
			differs++
		}
		for i := range rows {
			y := 76 + i*62
			style := colSame
			if !same {
				style = colDiff
			}
			s.box(x, y, cw, 44, style)
			s.text(x+cw/2, y+28, "middle", `font-family="monospace"`, rows[i][j])
		}
	}
	for i := range rows {
		s.text(x0-12, 76+i*62+28, "end", `font-weight="bold"`, fmt.Sprintf("connection %d", i+1))
	}
	caption := fmt.Sprintf("%d of 5 elements differ (orange): ", differs)
	if differs == 1 && rows[0][2] != rows[1][2] {
		caption += "the source port, which the client's kernel chose for each connection."
	} else {
		caption += "the rest are the same (blue)."
	}
	s.text(430, 222, "middle", "", caption)
	return s.bytes(), nil
}
