package main

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"portproof/specs"
)

// generate runs the generator on a fixture report into a fresh directory and returns the
// page and the pictures' directory.
func generate(t *testing.T, fixture string) (page string, imgDir string) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "proofs.md")
	if _, err := run(fixture, out, "img/proof"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), filepath.Join(dir, "img", "proof")
}

func TestPageListsEveryClaimWithItsState(t *testing.T) {
	page, _ := generate(t, "testdata/report.json")
	for _, c := range specs.Claims {
		if !strings.Contains(page, "{#"+anchor(c.ID)+"}") {
			t.Errorf("no heading anchored #%s for claim %s", anchor(c.ID), c.ID)
		}
		if !strings.Contains(page, "> "+c.Quote) {
			t.Errorf("claim %s: the article's words are not quoted", c.ID)
		}
	}
	checkHolds(t, "the page", page,
		"| [`tuple.identity`](#tuple-identity) | 1 | true | passed |",
		"| [`passive.no-data`](#passive-no-data) | 6 | true | FAILED |",
		"| [`backlog.open-vs-pending`](#backlog-open-vs-pending) | 4 | true | no proof yet |",
		// The fixture's 9 of Part I passed, close.timewait and queue.synrecv of chapters 7
		// and 8, and six of chapters 9 and 10; the registry's claims are all on the page.
		fmt.Sprintf("!!! failure \"17 of %d claims proven\"", len(specs.Claims)),
		"claim no.such-claim is not registered",
		"## Specs that name no registered claim",
		"`specs/ch01_five_tuple_test.go:19`", // relative to the suite's parent: no go.mod in the fixture
		"| 1.23ms |",
		"to equal", // the failure message
		"`net.core.somaxconn`",
		"The lesson: [chapter 3](ch3-limits.md).",
	)
}

func TestEvidenceIsRenderedReadably(t *testing.T) {
	page, _ := generate(t, "testdata/report.json")
	checkHolds(t, "the page", page,
		// tuples: a table, columns in the spec's order
		"| conn | client | server |",
		"| `first` | `tcp 127.0.0.1:40512 -> 127.0.0.1:7000` | `tcp 127.0.0.1:7000 -> 127.0.0.1:40512` |",
		// errno: one sentence
		"`connect` failed with **EADDRNOTAVAIL**, on a socket bound to `127.0.0.1:33249`, toward `127.0.0.1:58535`",
		// port_range
		"`net.ipv4.ip_local_port_range` = 32768 to 60999: **28232 ports**.",
		// ports: by role, long lists cut short
		"| connect | 30 | `40000, 40002,",
		"… (30 in all)`",
		// packets: time relative to the first segment
		"| time (µs after the first) | src | dst | flags | seq | ack | len |",
		"| 20 | `127.0.0.1:7000` | `127.0.0.1:40000` | `SYN,ACK` |",
		// an unknown name, nested: rendered by shape
		"**TCP counters (/proc/net/netstat)** <small>(`backlog_counters`)</small>",
		"*before*:",
		"| ListenOverflows | `1` |",
		// a scalar
		"**Accept at us** <small>(`accept_at_us`)</small>\n\n`1500`",
		"#### What the kernel answered, over ipv4 loopback 127.0.0.1",
	)
}

func TestPicturesAreDrawnFromTheEvidence(t *testing.T) {
	page, img := generate(t, "testdata/report.json")
	want := map[string][]string{
		// IPv4 first, and the source port is the one element marked as differing.
		"tuple-identity.svg": {"40512", "40514", "127.0.0.1", "1 of 5 elements differ", "the source port"},
		"handshake.svg":      {">SYN<", ">SYN,ACK<", ">ACK<", " 5 bytes of data at 60 µs", ">connect()<", " returned at 45 µs", ">accept()<", " called at 1500 µs", " of all the data at 70 µs"},
		"port-space.svg": {"32768-60999", "28232 source ports", "narrowed to 40000-40007 (8 ports)",
			"to 127.0.0.1:7000 until the kernel refused", ">40007<", ">#8<", ">#9<", ">EADDRNOTAVAIL<"},
		// limit.multiply's batches, apart from limit.per-destination's.
		"port-multiply.svg": {"to one destination", "to a second server port", "from a second client address",
			"127.0.0.2 → 127.0.0.1:7000", "unbound → 127.0.0.1:7001", "8 of 8", "the 3 batches that connected all used the same 8 port numbers"},
		// backlog_queue's three clients by port in a queue of 8+1 slots, and backlog_fill's
		// listeners: backlog+1 queued, the next client in SYN_SENT.
		"accept-queue.svg": {"backlog.queue: listen(fd, 8), 3 clients connect", "backlog.size: each queue filled", ">+1<", ":49670", ":49694", "0 → 1 → 2 → 3", "went down to 2",
			"listen(fd, 0)", "limit 0, holds 1", "limit 2, holds 3", ":42134", ":42140", "SYN_SENT: its SYN dropped; ETIMEDOUT after 1.01 s"},
		// backlog_overflow and backlog_packets, in ms after the client's first SYN.
		"backlog-overflow.svg": {"client 127.0.0.1:57844", "server 127.0.0.1:40697", "holds 1 (the filler), limit 0", "dropped",
			"ListenOverflows +1, ListenDrops +1", ">1.50<", "accept() takes the filler", "still SYN_SENT", "tcpi_rto 1000 ms",
			"SYN  (again: the same SYN)", "Not to scale", ">1015.89<", ">SYN,ACK<", ">1015.91<", ">1036.01<", "connect() returns", "1 retransmission", ":57844"},
	}
	checkPictures(t, img, want)
	checkShown(t, page, want)
	if strings.Contains(page, "No picture from this run") {
		t.Error("the page says a picture is missing, though the fixture has all the evidence")
	}
}

func TestMissingEvidenceGivesAPlaceholderAndANote(t *testing.T) {
	// The same report without its handshake capture and its limit proofs.
	fixture := renamed(t, "testdata/report.json", `"claim:handshake.before-accept"`, `"claim:handshake.shed"`,
		`"claim:limit.per-destination"`, `"claim:limit.fd"`, `"claim:limit.multiply"`, `"claim:limit.fd-config"`)
	page, img := generate(t, fixture)
	hs := checkSVG(t, filepath.Join(img, "handshake.svg"))
	if !strings.Contains(hs, "no packets to draw") {
		t.Errorf("handshake.svg is not the placeholder:\n%s", hs)
	}
	ps := checkSVG(t, filepath.Join(img, "port-space.svg"))
	if strings.Contains(ps, "narrowed") {
		t.Error("port-space.svg shows destinations the report does not have")
	}
	if n := strings.Count(page, "!!! note \"No picture from this run\""); n != 3 {
		t.Errorf("the page notes %d missing pictures, want 3: handshake, port space, multiply", n)
	}
}

func TestBacklogPicturesWithoutTheirEvidenceArePlaceholders(t *testing.T) {
	// The same report with chapter 4's evidence under names the pictures do not read.
	page, img := generate(t, renamed(t, "testdata/report.json", `"Name": "backlog_`, `"Name": "renamed_`))
	placeholders := map[string]string{
		"accept-queue.svg":     "recorded no accept queue",
		"backlog-overflow.svg": "recorded no dropped SYN",
	}
	checkPlaceholders(t, img, placeholders)
	checkShown(t, page, placeholders)
	if n := strings.Count(page, "!!! note \"No picture from this run\""); n != 2 {
		t.Errorf("the page notes %d missing pictures, want 2", n)
	}
}

func TestAReportThatIsMissingSaysHowToMakeIt(t *testing.T) {
	_, err := run(filepath.Join(t.TempDir(), "none.json"), filepath.Join(t.TempDir(), "p.md"), "img")
	if err == nil || !strings.Contains(err.Error(), "go test ./specs/") {
		t.Errorf("err = %v, want one that says to run the proofs", err)
	}
}

// renamed writes the fixture, each old string of oldnew replaced by its new one, into a fresh
// directory and returns its path: the same report with some of its evidence under names the
// pictures do not read. Nothing replaced fails the test: the names are not where it expects.
func renamed(t *testing.T, fixture string, oldnew ...string) string {
	t.Helper()
	b, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(oldnew...).Replace(string(b))
	if s == string(b) {
		t.Fatalf("%s: none of %q is in it", fixture, oldnew)
	}
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkPictures checks that each picture of want, in img, is a well-formed SVG (checkSVG)
// that holds every one of its parts.
func checkPictures(t *testing.T, img string, want map[string][]string) {
	t.Helper()
	for name, parts := range want {
		checkHolds(t, name, checkSVG(t, filepath.Join(img, name)), parts...)
	}
}

// checkHolds checks that text, a picture's or the page's, holds every one of parts; name
// says whose it is.
func checkHolds(t *testing.T, name, text string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("%s lacks %q", name, p)
		}
	}
}

// checkPlaceholders checks that each picture of want, in img, is a well-formed SVG that is
// the placeholder saying its text.
func checkPlaceholders(t *testing.T, img string, want map[string]string) {
	t.Helper()
	for name, says := range want {
		if b := checkSVG(t, filepath.Join(img, name)); !strings.Contains(b, says) {
			t.Errorf("%s is not the placeholder that says %q:\n%s", name, says, b)
		}
	}
}

// checkShown checks that the page shows each picture of want.
func checkShown[V any](t *testing.T, page string, want map[string]V) {
	t.Helper()
	for name := range want {
		if !strings.Contains(page, "](img/proof/"+name+")") {
			t.Errorf("the page does not show %s", name)
		}
	}
}

var urlRE = regexp.MustCompile(`https?://[^"'\s<>)]+`)

// checkSVG reads an SVG, checks it is well-formed XML that refers to nothing outside itself
// (the only URL is its namespace), and returns it.
func checkSVG(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(string(b)))
	for {
		if _, err := d.Token(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("%s: not well-formed: %v", path, err)
			}
			break
		}
	}
	for _, u := range urlRE.FindAllString(string(b), -1) {
		if u != "http://www.w3.org/2000/svg" {
			t.Errorf("%s refers to %s", path, u)
		}
	}
	return string(b)
}
