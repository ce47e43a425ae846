package main

import (
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// The handshake picture is to scale in time: every mark's height is the same linear
// function of its time, whatever the gaps between them.
func TestHandshakeIsDrawnToScale(t *testing.T) {
	_, img := generate(t, "testdata/report.json")
	b := checkSVG(t, filepath.Join(img, "handshake.svg"))
	marks := regexp.MustCompile(`<(line|circle|rect) data-us="([0-9.e+-]+)" ` +
		`(?:x1="[0-9.]+" y1="([0-9.]+)"|cx="[0-9.]+" cy="([0-9.]+)"|x="[0-9.]+" y="([0-9.]+)" width="14")`)
	type mark struct{ us, y float64 }
	var ms []mark
	kinds := map[string]int{}
	for _, m := range marks.FindAllStringSubmatch(b, -1) {
		us, _ := strconv.ParseFloat(m[2], 64)
		y := m[3] + m[4] + m[5]
		if y == "" {
			continue // the queue's bar: a span, not a moment
		}
		f, _ := strconv.ParseFloat(y, 64)
		if m[1] == "rect" {
			f += 7 // the accept mark is a 14 px square centred on its time
		}
		ms = append(ms, mark{us, f})
		kinds[m[1]]++
	}
	// The fixture: five segments, connect() returned and accept() called.
	if kinds["line"] != 5 || kinds["circle"] != 1 || kinds["rect"] != 1 {
		t.Fatalf("marks by kind: %v, want 5 segments, 1 connect, 1 accept", kinds)
	}
	first, last := ms[0], ms[0]
	for _, m := range ms {
		if m.us < first.us {
			first = m
		}
		if m.us > last.us {
			last = m
		}
	}
	if last.us != 1500 {
		t.Errorf("the latest mark is at %v µs, want accept() at 1500", last.us)
	}
	pxPerUS := (last.y - first.y) / (last.us - first.us)
	if pxPerUS <= 0 {
		t.Fatalf("time does not run down: %v", ms)
	}
	for _, m := range ms {
		if want := first.y + (m.us-first.us)*pxPerUS; math.Abs(m.y-want) > 0.1 {
			t.Errorf("the mark at %v µs is at y=%v, want %v: not to scale", m.us, m.y, want)
		}
	}
}
