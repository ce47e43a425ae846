package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// primerFixture draws the primer's pictures from the fixture report, as edit leaves it, into
// a fresh directory.
func primerFixture(t *testing.T, edit func(*suiteReport)) string {
	t.Helper()
	r, err := loadReport("testdata/primer-report.json")
	if err != nil {
		t.Fatal(err)
	}
	edit(&r)
	ps, _ := proofs(r)
	byID := map[string]proof{}
	for _, p := range ps {
		byID[p.ID] = p
	}
	pics := map[string][]byte{}
	primerPictures(byID, ps, pics)
	dir := t.TempDir()
	for name, b := range pics {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPrimerPicturesAreDrawnFromTheEvidence(t *testing.T) {
	dir := primerFixture(t, func(*suiteReport) {})
	want := map[string][]string{
		// handshake.before-accept's IPv4 connection: its three segments with their relative
		// numbers and lo's times, and the two calls on the timeline.
		"primer-handshake.svg": {"client 127.0.0.1:46398", "server 127.0.0.1:37347", ">SYN  seq 0<",
			">SYN-ACK  seq 0, ack 1<", ">ACK  seq 1, ack 1<", ">at 11 µs<", ">at 26 µs<",
			"connect() returned 0", ">at 42 µs<", "accept() called", ">at 180 µs<", ">SYN_RECV<"},
		// handshake.shed's two ends: the server's FIN and RST, what each client read, and the
		// state each client's socket was left in.
		"primer-close.svg": {">FIN,ACK  at 36 µs<", ">RST,ACK  at 56 µs<", "end-of-stream",
			"read() fails with ECONNRESET", ">CLOSE_WAIT<", ">CLOSE<"},
		// The common path, with the states the fixture's proofs read marked by chapter:
		// ESTABLISHED by chapters 4 and 5, CLOSE_WAIT by chapter 5 only.
		"primer-states.svg": {">SYN_SENT<", ">FIN_WAIT2<", ">TIME_WAIT<", ">LAST_ACK<", "your run: ch. 4, 5<",
			"your run: ch. 5<",
			// TCP_INFO's names, and Linux's TIME_WAIT, as the primer's text has them.
			"60 s later (Linux)", "TCP_TIMEWAIT_LEN", ">CLOSE<", "closes first"},
	}
	checkPictures(t, dir, want)
}

func TestPrimerPicturesWithoutTheirEvidence(t *testing.T) {
	// The same specs, passed, with no evidence.
	dir := primerFixture(t, func(r *suiteReport) {
		for i := range r.SpecReports {
			r.SpecReports[i].ReportEntries = nil
		}
	})
	checkPlaceholders(t, dir, map[string]string{
		"primer-handshake.svg": "captured no handshake",
		"primer-close.svg":     "captured no FIN and no RST",
	})
	// The states are the protocol's, drawn whatever the run; only the marks need evidence.
	if b := checkSVG(t, filepath.Join(dir, "primer-states.svg")); strings.Contains(b, "your run: ch.") ||
		!strings.Contains(b, ">ESTABLISHED<") {
		t.Errorf("primer-states.svg without evidence:\n%s", b)
	}
}

func TestPrimerStatesNamesAreTCPInfos(t *testing.T) {
	// TCP_INFO (sock.TCPState) says CLOSE where RFC 9293 writes CLOSED; the picture says
	// which spelling it uses, so it must use it throughout.
	b := string(primerStatesPicture(nil))
	if strings.Contains(b, "CLOSED") || !strings.Contains(b, ">CLOSE<") {
		t.Errorf("primer-states.svg names the closed state otherwise than TCP_INFO:\n%s", b)
	}
}

func TestPrimerMarksFitAStatesBox(t *testing.T) {
	for _, c := range []struct {
		ch   []int
		want []string
	}{
		{nil, nil},
		{[]int{4}, []string{"your run: ch. 4"}},
		{[]int{4, 5}, []string{"your run: ch. 4, 5"}},
		{[]int{1, 2, 4, 5, 6, 7, 8}, []string{"your run:", "ch. 1, 2, 4-8"}},
		{[]int{1, 3, 5, 7, 9}, []string{"your run:", "ch. 1, 3, 5, 7, 9"}},
	} {
		got := primerMarks(c.ch)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("primerMarks(%v) = %q, want %q", c.ch, got, c.want)
		}
		for _, line := range got {
			if len(line) > 21 {
				t.Errorf("primerMarks(%v): %q is wider than a state's box", c.ch, line)
			}
		}
	}
}
