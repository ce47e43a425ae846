package main

import (
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
	checkPictures(t, img, want)
	checkShown(t, page, want)
}

func TestPartIIPicturesOfChapters9And10WithoutTheirEvidence(t *testing.T) {
	_, img := generate(t, renamed(t, "testdata/report.json",
		`"Name": "dualstack"`, `"Name": "renamed"`, `"Name": "epoll_`, `"Name": "renamed_`))
	checkPlaceholders(t, img, map[string]string{
		"dual-stack.svg":     "recorded no listeners",
		"epoll-triggers.svg": "recorded no script",
		"epoll-scale.svg":    "recorded no timings",
		"epoll-herd.svg":     "recorded no wake-ups",
	})
}
