package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Chapters 9 and 10: each picture drawn from the fixture's evidence, which is a real run's.
func TestPartIIPicturesOfChapters9And10(t *testing.T) {
	page, img := generate(t, "testdata/report.json")
	want := map[string][]string{
		// IPV6_V6ONLY 0: both clients on one listener, the IPv4 one mapped, 0.0.0.0 refused;
		// 1: refused while alone, then two listeners on one port.
		"dual-stack.svg": {"IPV6_V6ONLY 0 (net.ipv6.bindv6only 0)", "[::ffff:127.0.0.1]:36438", "bind 0.0.0.0:44315",
			"EADDRINUSE", "IPV6_V6ONLY 1 (Config.V6Only)", "ECONNREFUSED", "0.0.0.0:39997", "seen as 127.0.0.1:38842"},
		// The script: level-triggered reports every wait with bytes unread, edge-triggered
		// leaves four of them unreported.
		"epoll-triggers.svg": {"EPOLLIN|EPOLLET", "read to EAGAIN (120 bytes)", "nothing; 70 bytes wait", "reported: EPOLLIN"},
		// The chart: three counts, both calls, values from the run.
		"epoll-scale.svg": {"10,000", "1,000", ">100<", "poll(2)", "epoll_wait(2)", "1.2 ms", "2.0 µs", "<polyline"},
		"epoll-herd.svg":  {"registered EPOLLIN: 50 connections, 200 wake-ups in all", "registered EPOLLIN|EPOLLEXCLUSIVE: 50 connections, 50 wake-ups", "woke 50, epoll_wait returned 28, accepted 26", "woke 0, epoll_wait returned 0"},
	}
	for name, parts := range want {
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

func TestPartIIPicturesOfChapters9And10WithoutTheirEvidence(t *testing.T) {
	b, err := os.ReadFile("testdata/report.json")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(`"Name": "dualstack"`, `"Name": "renamed"`, `"Name": "epoll_`, `"Name": "renamed_`).Replace(string(b))
	fixture := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(fixture, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	_, img := generate(t, fixture)
	for name, want := range map[string]string{
		"dual-stack.svg":     "recorded no listeners",
		"epoll-triggers.svg": "recorded no script",
		"epoll-scale.svg":    "recorded no timings",
		"epoll-herd.svg":     "recorded no wake-ups",
	} {
		if b := checkSVG(t, filepath.Join(img, name)); !strings.Contains(b, want) {
			t.Errorf("%s is not the placeholder that says %q", name, want)
		}
	}
}
