package main

import (
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"portproof/specs/evidence"
)

// hsMark is a mark of the handshake picture: its panel, its time, and its height.
type hsMark struct {
	panel, kind string
	us, y       float64
}

var hsMarkRE = regexp.MustCompile(`<(line|circle|rect) data-panel="(\w+)" data-us="([0-9.e+-]+)" ` +
	`(?:x1="[0-9.]+" y1="([0-9.]+)"|cx="[0-9.]+" cy="([0-9.]+)"|x="[0-9.]+" y="([0-9.]+)" width="14")`)

// hsMarks reads the moments the picture marks (the queue's bar, a span, aside).
func hsMarks(svg string) []hsMark {
	var ms []hsMark
	for _, m := range hsMarkRE.FindAllStringSubmatch(svg, -1) {
		y := m[4] + m[5] + m[6]
		if y == "" {
			continue
		}
		us, _ := strconv.ParseFloat(m[3], 64)
		f, _ := strconv.ParseFloat(y, 64)
		if m[1] == "rect" {
			f += 7 // the accept mark is a 14 px square centred on its time
		}
		ms = append(ms, hsMark{panel: m[2], kind: m[1], us: us, y: f})
	}
	return ms
}

// checkToScale checks that on each panel every mark's height is the same linear function of
// its time, whatever the gaps between them, and returns the marks by panel.
func checkToScale(t *testing.T, ms []hsMark) map[string][]hsMark {
	t.Helper()
	by := map[string][]hsMark{}
	for _, m := range ms {
		by[m.panel] = append(by[m.panel], m)
	}
	for panel, ms := range by {
		first, last := ms[0], ms[0]
		for _, m := range ms {
			if m.us < first.us {
				first = m
			}
			if m.us > last.us {
				last = m
			}
		}
		pxPerUS := (last.y - first.y) / (last.us - first.us)
		if pxPerUS <= 0 {
			t.Fatalf("%s: time does not run down: %v", panel, ms)
		}
		for _, m := range ms {
			if want := first.y + (m.us-first.us)*pxPerUS; math.Abs(m.y-want) > 0.1 {
				t.Errorf("%s: the mark at %v µs is at y=%v, want %v: not to scale", panel, m.us, m.y, want)
			}
		}
	}
	return by
}

func kinds(ms []hsMark) map[string]int {
	k := map[string]int{}
	for _, m := range ms {
		k[m.kind]++
	}
	return k
}

// The fixture's handshake takes 70 µs and accept() comes at 1500: too close to tell apart on
// one axis, so the picture draws them again, magnified, and every mark is to scale on both.
func TestHandshakeIsDrawnToScale(t *testing.T) {
	_, img := generate(t, "testdata/report.json")
	b := checkSVG(t, filepath.Join(img, "handshake.svg"))
	by := checkToScale(t, hsMarks(b))
	if k := kinds(by["whole"]); k["line"] != 5 || k["circle"] != 1 || k["rect"] != 1 {
		t.Errorf("the whole story's marks by kind: %v, want 5 segments, 1 connect, 1 accept", k)
	}
	if k := kinds(by["zoom"]); k["line"] != 5 || k["circle"] != 1 || k["rect"] != 0 {
		t.Errorf("the magnified marks by kind: %v, want 5 segments, 1 connect, and not accept", k)
	}
	checkHolds(t, "handshake.svg", b, "magnified", "in the accept queue till 1500 µs")
}

// Marks far enough apart need no magnified copy.
func TestHandshakeSpreadOutHasOneAxis(t *testing.T) {
	segs := []evidence.TimelinePacket{
		{AtUS: 0, From: "client", Src: "127.0.0.1:40000", Dst: "127.0.0.1:7000", Flags: "SYN"},
		{AtUS: 30, From: "server", Src: "127.0.0.1:7000", Dst: "127.0.0.1:40000", Flags: "SYN,ACK"},
		{AtUS: 60, From: "client", Src: "127.0.0.1:40000", Dst: "127.0.0.1:7000", Flags: "ACK"},
	}
	b, err := handshakePicture(segs, []evidence.TimelineCall{{Call: "connect returned", AtUS: 90},
		{Call: "accept4 called", AtUS: 150}})
	if err != nil {
		t.Fatal(err)
	}
	by := checkToScale(t, hsMarks(string(b)))
	if len(by["zoom"]) > 0 || len(by["whole"]) != 5 {
		t.Errorf("marks by panel: %v, want the 5 on one axis", by)
	}
}
