package main

import (
	"testing"
)

// server.json holds, from one run, the proofs the server pages' pictures are drawn from (IPv4:
// passive.no-data, backlog.queue and passive.spawns-active for the steps, handshake.emfile-queued
// and handshake.shed for the loop), and the machine entry.
func TestServerPicturesAreDrawnFromTheEvidence(t *testing.T) {
	_, img := generate(t, "testdata/server.json")
	checkPictures(t, img, map[string][]string{
		"server-steps.svg": {
			// passive.no-data's socket, step by step: one descriptor, its address, LISTEN.
			"socket(AF_INET, SOCK_STREAM) = 7", "bind(7, address)", ">127.0.0.1:52799<",
			"state CLOSE, SO_ACCEPTCONN 0, getpeername: ENOTCONN", "listen(7, backlog)",
			"state LISTEN, SO_ACCEPTCONN 1", "the SYN queue", "net.ipv4.tcp_syncookies 1",
			"the accept queue", "1 waiting here, this proof", ">:44698<",
			"connect(8, 127.0.0.1:52799) = 0", "127.0.0.1:44698 → 127.0.0.1:52799", "state ESTABLISHED before any accept()",
			"accept4(7) = 9", "127.0.0.1:52799 ↔ 127.0.0.1:44698", "descriptor 7 goes on listening",
			// backlog.queue's limit.
			"listen(fd, 8) read back a limit of 8", "net.core.somaxconn (4096)",
			"Its length as clients came: 0, 1, 2, 3",
			// passive.spawns-active's descriptors and 4-tuples.
			"10 with listener 7; 18 after 8 connect() calls", "26 after as many accept4()",
			">17<", ">24<", "↔ :41810", "↔ :41872", "every one is local 127.0.0.1:38823",
			// Each part names its proof, and its listener: three proofs, three listeners.
			"from passive.no-data", "its listener 127.0.0.1:52799", "from backlog.queue, another listener (",
			"from passive.spawns-active", "its listener 127.0.0.1:38823",
		},
		"loop-spare.svg": {
			// handshake.emfile-queued's busy loop, and handshake.shed's refserver.
			"70.8% of a core", "36,913 epoll_wait calls in 0.20 s", "each allowed to sleep 1000 ms",
			"all 36,913 accept4 calls", "from handshake.emfile-queued",
			"1.0% of a core", "RLIMIT_NOFILE 40: 12 clients served, 13 shed", "FIN 38 µs after",
			"10 clients arriving in 1.01 s", "from handshake.shed",
		},
	})
}

func TestServerPicturesWithoutTheirEvidenceArePlaceholders(t *testing.T) {
	_, img := generate(t, renamed(t, "testdata/server.json",
		`"Name": "socket_kinds"`, `"Name": "renamed"`, `"Name": "cpu_time"`, `"Name": "renamed"`))
	checkPlaceholders(t, img, map[string]string{
		"server-steps.svg": "recorded no sockets",
		"loop-spare.svg":   "recorded no CPU time",
	})
}
