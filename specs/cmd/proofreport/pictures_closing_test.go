package main

import (
	"strings"
	"testing"
)

// TestPartTwoPicturesAreDrawnFromTheEvidence: chapter 7's close and chapter 8's two views are
// drawn from the fixture's close_timewait, queue_defer and queue_overflow, as a run recorded
// them.
func TestClosingAndQueuesPicturesAreDrawnFromTheEvidence(t *testing.T) {
	page, img := generate(t, "testdata/report.json")
	want := map[string][]string{
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
	}
	checkPictures(t, img, want)
	checkShown(t, page, want)
}

func TestClosingAndQueuesPicturesWithoutTheirEvidenceArePlaceholders(t *testing.T) {
	page, img := generate(t, renamed(t, "testdata/report.json",
		`"Name": "close_`, `"Name": "renamed_`, `"Name": "queue_`, `"Name": "renamed_`))
	checkPlaceholders(t, img, map[string]string{
		"close-timeline.svg":  "recorded no close",
		"handshake-views.svg": "recorded no handshake",
	})
	if n := strings.Count(page, "!!! note \"No picture from this run\""); n != 2 {
		t.Errorf("the page notes %d missing pictures, want 2", n)
	}
}
