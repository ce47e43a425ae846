package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPartTwoPicturesAreDrawnFromTheEvidence: chapter 7's close and chapter 8's two views are
// drawn from the fixture's close_timewait, queue_defer and queue_overflow, as a run recorded
// them.
func TestClosingAndQueuesPicturesAreDrawnFromTheEvidence(t *testing.T) {
	page, img := generate(t, "testdata/report.json")
	for name, parts := range map[string][]string{
		// The server closes first: its FIN, its orphan in FIN_WAIT2 on tcp_fin_timeout, the
		// client's CLOSE_WAIT and LAST_ACK, the ACK the filter dropped, TIME_WAIT; then the
		// RST of SO_LINGER {1, 0}.
		"close-timeline.svg": {"tcp_fin_timeout 7 s", ">close()<", ">FIN,ACK<", ">FIN_WAIT2<",
			">CLOSE_WAIT<", ">LAST_ACK<", ">TIME_WAIT<", "dropped by the client&#39;s filter",
			"the server&#39;s end, TIME_WAIT; the client&#39;s, nothing", "SO_LINGER {1, 0}",
			">RST,ACK<", "read() = ECONNRESET", "No TIME_WAIT"},
		// The deferred handshake's two moments, then each overflow's.
		"handshake-views.svg": {"TCP_DEFER_ACCEPT", "TCPDeferAcceptDrop +1", "a request, SYN_RECV",
			"accept queue 0 (limit 8)", "ESTABLISHED (TCP_INFO)", "3 bytes: they complete the connection",
			"tcp_abort_on_overflow 0", "accept queue 3 (limit 2): full", "ListenOverflows +1",
			"1 segment unacknowledged; read(): EAGAIN", "tcp_abort_on_overflow 1", "EmbryonicRsts +1", "read(): ECONNRESET",
			"nothing for it", "3 fillers connect"},
	} {
		b := checkSVG(t, filepath.Join(img, name))
		for _, p := range parts {
			if !strings.Contains(b, p) {
				t.Errorf("%s lacks %q", name, p)
			}
		}
		if !strings.Contains(page, "](img/proof/"+name+")") {
			t.Errorf("the page does not show %s", name)
		}
	}
}

func TestClosingAndQueuesPicturesWithoutTheirEvidenceArePlaceholders(t *testing.T) {
	b, err := os.ReadFile("testdata/report.json")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(`"Name": "close_`, `"Name": "renamed_`, `"Name": "queue_`, `"Name": "renamed_`).Replace(string(b))
	fixture := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(fixture, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	page, img := generate(t, fixture)
	for name, want := range map[string]string{
		"close-timeline.svg":  "recorded no close",
		"handshake-views.svg": "recorded no handshake",
	} {
		if b := checkSVG(t, filepath.Join(img, name)); !strings.Contains(b, want) {
			t.Errorf("%s is not the placeholder that says %q:\n%s", name, want, b)
		}
	}
	if n := strings.Count(page, "!!! note \"No picture from this run\""); n != 2 {
		t.Errorf("the page notes %d missing pictures, want 2", n)
	}
}
