//go:build linux

package refserver

import (
	"bytes"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a log destination that the loops and the test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSuffix(b.buf.String(), "\n"), "\n")
}

// reset ends c with RST instead of FIN: SO_LINGER {on, 0 seconds}, then close(2).
func reset(c *net.TCPConn) error {
	if err := c.SetLinger(0); err != nil {
		return err
	}
	return c.Close()
}

// TestResetNarrated: with a line per connection, a client that resets is narrated with
// the errno's name, and the server goes on. (The reason was once built from errors.Unwrap of
// a bare unix.Errno, which is nil: the first reset crashed the server.)
func TestResetNarrated(t *testing.T) {
	noLeaks(t)
	var logged syncBuffer
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
	for _, l := range logged.lines() {
		found = found || strings.Contains(l, ": ECONNRESET (connection reset by peer)")
	}
	if !found {
		t.Errorf("no close line says ECONNRESET:\n%s", strings.Join(logged.lines(), "\n"))
	}
}
