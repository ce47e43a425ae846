//go:build linux

package refserver

import (
	"cmp"
	"crypto/rand"
	"io"
	"log"
	"net"
	"portproof/refserver/sock"
	"strings"
	"sync"
	"testing"
	"time"

	"portproof/internal/testkit"
)

// reset ends c with RST instead of FIN: SO_LINGER {on, 0 seconds}, then close(2).
func reset(c *net.TCPConn) error {
	if err := c.SetLinger(0); err != nil {
		return err
	}
	return c.Close()
}

// TestResetNarrated: with a line per connection, a client that resets is narrated with
// the errno's name, and the server goes on: the close line's reason must not come from
// errors.Unwrap of a bare unix.Errno, which is nil, and would crash the server at the first
// reset.
func TestResetNarrated(t *testing.T) {
	noLeaks(t)
	var logged testkit.Lines
	srv := startServer(t, Config{Handler: Echo{}, Log: log.New(&logged, "", 0), LogConns: true})
	c := dial(t, srv.Addr())
	if err := roundTrip(c, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := reset(c); err != nil {
		t.Fatal(err)
	}
	waitStats(t, srv, "the reset connection closed", func(st Stats) bool { return st.Closed == 1 })
	if err := roundTrip(dial(t, srv.Addr()), []byte("still serving")); err != nil {
		t.Error(err)
	}
	var found bool
	for _, l := range logged.All() {
		found = found || strings.Contains(l, ": ECONNRESET (connection reset by peer)")
	}
	if !found {
		t.Errorf("no close line says ECONNRESET:\n%s", strings.Join(logged.All(), "\n"))
	}
}

// TestResets: a thousand clients, a hundred at a time, each send 64 KiB, read one byte of the
// echo, and reset (SO_LINGER {1, 0}, close): mid-transfer, with input unread and output owed
// on the server's side. The server counts them (Stats.Resets) and logs at most a line a
// second about them, it serves on, and its descriptors come back to what they were.
func TestResets(t *testing.T) {
	const clients, atOnce, size = 1000, 100, 64 << 10
	noLeaks(t)
	var logged testkit.Lines
	// A line per connection is what LogConns asks for; without it, resets are one kind of
	// event among the rate-limited ones.
	srv := startServer(t, Config{Handler: Echo{}, Log: log.New(&logged, "", 0)})
	before, err := sock.OpenDescriptors()
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, size)
	rand.Read(payload)
	start := time.Now()
	sem := make(chan struct{}, atOnce)
	var wg sync.WaitGroup
	for i := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialE(srv.Addr())
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			defer c.Close()
			if _, err := c.Write(payload); err != nil {
				t.Errorf("client %d: write: %v", i, err)
				return
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Errorf("client %d: the first byte of the echo: %v", i, err)
				return
			}
			if err := reset(c); err != nil {
				t.Errorf("client %d: reset: %v", i, err)
			}
		})
	}
	wg.Wait()
	st := waitStats(t, srv, "every reset connection closed", func(st Stats) bool { return st.Closed == clients })
	took := time.Since(start)
	var after int
	err = poll(5*time.Second, func() (bool, error) {
		var err error
		after, err = sock.OpenDescriptors()
		return after <= before, err
	})
	if err != nil {
		t.Errorf("descriptors: %d before the resets, %d after: %v", before, after, err)
	}
	var lines int
	var first string
	for _, l := range logged.All() {
		if strings.Contains(l, "reset by ") {
			lines++
			first = cmp.Or(first, l)
		}
	}
	t.Logf("%d clients reset mid-transfer in %v: %s; %d log lines about them (%q); descriptors %d before, %d after",
		clients, took.Round(time.Millisecond), st, lines, first, before, after)
	if st.Resets != clients || st.Open != 0 || st.Accepted != clients {
		t.Errorf("stats %s; want %d accepted and reset, none open", st, clients)
	}
	if limit := int(took/time.Second) + 2; lines == 0 || lines > limit {
		t.Errorf("%d log lines about resets in %v; want one at least, at most one a second", lines, took)
	}
	if err := roundTrip(dial(t, srv.Addr()), []byte("still serving")); err != nil {
		t.Errorf("after the resets: %v", err)
	}
}
