package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
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

func (s *svg) bytes() []byte {
	s.WriteString("</svg>\n")
	return s.Bytes()
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
func tuplePicture(conns []tupleSeen) ([]byte, error) {
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

// tupleSeen mirrors lab.TupleSeen.
type tupleSeen struct {
	Conn   string `json:"conn"`
	Client string `json:"client"`
	Server string `json:"server"`
}

// segment is one captured TCP segment: lab.Segment (an absolute time), or a chapter's
// timeline packet (at_us, µs after the connection's SYN, and from: "client" or "server").
type segment struct {
	Time  time.Time `json:"time"`
	AtUS  *float64  `json:"at_us"`
	From  string    `json:"from"`
	Src   string    `json:"src"`
	Dst   string    `json:"dst"`
	Flags string    `json:"flags"`
	Len   int       `json:"len"`
}

// decodeSegments reads a "packets" entry: a list of segments, or an object that holds
// one under "packets" (with the connection's name beside it).
func decodeSegments(e reportEntry) ([]segment, error) {
	var wrapped struct {
		Packets []segment `json:"packets"`
	}
	if err := e.decode(&wrapped); err == nil && len(wrapped.Packets) > 0 {
		return wrapped.Packets, nil
	}
	var segs []segment
	if err := e.decode(&segs); err != nil {
		return nil, err
	}
	return segs, nil
}

// offsets are the segments' times in µs after the first one's.
func offsets(segs []segment) []float64 {
	us := make([]float64, len(segs))
	for i, sg := range segs {
		switch {
		case sg.AtUS != nil:
			us[i] = *sg.AtUS
		case !sg.Time.IsZero() && !segs[0].Time.IsZero():
			us[i] = float64(sg.Time.Sub(segs[0].Time).Nanoseconds()) / 1e3
		}
	}
	if segs[0].AtUS != nil {
		for i := range us {
			us[i] -= *segs[0].AtUS
		}
	}
	return us
}

// handshakePicture draws the captured segments as a sequence diagram between client and
// server, with accept() at acceptUS µs after the first segment, when known (not NaN).
func handshakePicture(segs []segment, acceptUS float64) ([]byte, error) {
	if len(segs) == 0 {
		return nil, fmt.Errorf("no segments")
	}
	fromClient := func(sg segment) bool { return sg.From == "client" }
	client, server := "", ""
	for _, sg := range segs {
		if sg.From == "" && sg.Flags == "SYN" {
			client = sg.Src
			break
		}
	}
	if client != "" || segs[0].From == "" {
		if client == "" {
			client = segs[0].Src
		}
		fromClient = func(sg segment) bool { return sg.Src == client }
	}
	for _, sg := range segs {
		if fromClient(sg) {
			client, server = sg.Src, sg.Dst
			break
		}
	}
	us := offsets(segs)
	known := !math.IsNaN(acceptUS)
	const cx, sx, top, step = 200, 620, 96, 44
	rowsN := len(segs)
	if known {
		rowsN++
	}
	h := top + rowsN*step + 50
	s := newSVG(800, h, "The TCP handshake on lo, as the proof captured it, and accept()")
	s.text(400, 26, "middle", `font-weight="bold" font-size="16"`, "The handshake happens before accept()")
	s.text(cx, 58, "middle", `font-weight="bold"`, "client "+client)
	s.text(sx, 58, "middle", `font-weight="bold"`, "server "+server)
	s.text(60, 58, "middle", `font-size="12" fill="#555555"`, "µs")
	fmt.Fprintf(s, `<line x1="%d" y1="70" x2="%d" y2="%d" stroke="#9e9e9e" stroke-width="2"/>`+"\n", cx, cx, h-30)
	fmt.Fprintf(s, `<line x1="%d" y1="70" x2="%d" y2="%d" stroke="#9e9e9e" stroke-width="2"/>`+"\n", sx, sx, h-30)
	fmt.Fprint(s, `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1565c0"/></marker></defs>`+"\n")
	row := 0
	acceptDrawn := !known
	drawAccept := func() {
		y := top + row*step
		s.box(sx-90, y-4, 180, 30, colDiff)
		s.text(sx, y+16, "middle", `font-family="monospace" font-weight="bold"`, "accept() called")
		s.text(60, y+16, "middle", `font-size="12" fill="#555555"`, fmt.Sprintf("%.0f", acceptUS))
		row++
		acceptDrawn = true
	}
	for i, sg := range segs {
		if !acceptDrawn && us[i] > acceptUS {
			drawAccept()
		}
		y := top + row*step
		x1, x2 := cx, sx
		if !fromClient(sg) {
			x1, x2 = sx, cx
		}
		fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#1565c0" stroke-width="2" marker-end="url(#arrow)"/>`+"\n", x1, y, x2, y+18)
		label := sg.Flags
		if sg.Len > 0 {
			label += fmt.Sprintf("  (%d bytes of data)", sg.Len)
		}
		s.text((cx+sx)/2, y-2, "middle", `font-family="monospace"`, label)
		s.text(60, y+12, "middle", `font-size="12" fill="#555555"`, fmt.Sprintf("%.0f", us[i]))
		row++
	}
	if !acceptDrawn {
		drawAccept()
	}
	return s.bytes(), nil
}
