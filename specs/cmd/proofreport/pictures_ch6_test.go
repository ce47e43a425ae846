package main

import (
	"testing"

	"portproof/specs/evidence"
)

// testdata/ch6-report.json holds chapter 6's IPv4 evidence from a run: passive.no-data's
// sockets and refusals, passive.spawns-active's descriptors, passive.shared-port's
// SO_REUSEPORT spread and repeated 4-tuples.

func TestChapter6PicturesAreDrawnFromTheEvidence(t *testing.T) {
	page, img := generate(t, "testdata/ch6-report.json")
	want := map[string][]string{
		// passive.no-data: one descriptor before and after listen(), the refusals grouped
		// by errno, the accepted socket and its client; passive.spawns-active: the listener,
		// every accepted descriptor, and the counts of /proc/self/fd.
		passiveActiveSVG: {"fd 7: bound, not listening", "state CLOSE", "fd 7: the listener (passive)",
			"state LISTEN", "SO_ACCEPTCONN 1", "read, recv, getpeername: ENOTCONN", "send: EPIPE",
			"fd 9: accepted (active)", "peer 127.0.0.1:54630", "read: &#34;hello&#34;",
			"fd 8: the client (active)", "local 127.0.0.1:54630",
			"8 connections: 8 new descriptors", "accept queue: 8, then 0",
			"fd 17 · ESTABLISHED · SO_ACCEPTCONN 0 · peer 127.0.0.1:36700", "fd 24 ·",
			"10, the listener", "18: +8 client sockets; 8 connections queued",
			"26: +8 accepted sockets"},
		// passive.shared-port: four queues against an even share, and each 4-tuple twice.
		reuseportSpreadSVG: {"4 listeners on 127.0.0.1:42261", "1000 connections", "listener 3",
			"fd 11", ">242<", ">256<", ">269<", ">233<", "an even share, 250", "233 to 269, within 8%",
			"from 127.0.0.1:45665", "all 8 landed on the same listener twice"},
	}
	checkPictures(t, img, want)
	checkShown(t, page, want)
	for name, why := range ch6Missing(t, "testdata/ch6-report.json") {
		t.Errorf("%s is noted missing, though the fixture has its evidence: %s", name, why)
	}
}

// ch6Missing is what pictures notes missing of chapter 6's pictures, from the report at
// path (the fixture has no other chapter's evidence: theirs are missing, and not looked at).
func ch6Missing(t *testing.T, path string) notes {
	t.Helper()
	r, err := loadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := proofs(r)
	_, missing := pictures(r, ps)
	ours := notes{}
	for _, name := range []string{passiveActiveSVG, reuseportSpreadSVG} {
		if why, ok := missing[name]; ok {
			ours[name] = why
		}
	}
	return ours
}

func TestChapter6PicturesWithoutTheirEvidenceArePlaceholders(t *testing.T) {
	name := func(entry string) string { return `"Name": "` + entry + `"` }
	fixture := renamed(t, "testdata/ch6-report.json",
		name(evidence.EntrySocketKinds), name("renamed"),
		name(evidence.EntryDescriptorsSpawned), name("renamed"),
		name(evidence.EntryReusePortSpread), name("renamed"))
	_, img := generate(t, fixture)
	checkPlaceholders(t, img, map[string]string{
		passiveActiveSVG:   "recorded no sockets",
		reuseportSpreadSVG: "recorded no SO_REUSEPORT group",
	})
	if missing := ch6Missing(t, fixture); len(missing) != 2 {
		t.Errorf("chapter 6's missing pictures noted for the page: %v, want both", missing)
	}
}

func TestChapter6PicturesOfClaimsWithoutSpecsAreNotNoted(t *testing.T) {
	// The main fixture has no spec of passive.spawns-active or passive.shared-port: the
	// page says so under each claim, and needs no note on the placeholder as well.
	if missing := ch6Missing(t, "testdata/report.json"); len(missing) != 0 {
		t.Errorf("notes for pictures of claims without a spec: %v", missing)
	}
}
