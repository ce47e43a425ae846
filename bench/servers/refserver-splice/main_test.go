package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"portproof/refserver"
)

// TestSpliceEcho: what each client sends comes back whole and in order, whether the server
// splices it or copies it: small writes, writes larger than the loop's read, a reader that
// stalls while the writer fills every buffer (so that what the socket cannot take goes
// through Write), and a half-close that the echo answers with its FIN.
func TestSpliceEcho(t *testing.T) {
	srv, err := refserver.New(refserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Loops: 2, Handler: spliceEcho{}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	for _, tc := range []struct {
		name        string
		size, chunk int
		stall       time.Duration
	}{
		{"small writes", 100 << 10, 100, 0},
		{"large writes", 8 << 20, 256 << 10, 0},
		{"stalled reader", 16 << 20, 1 << 20, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.DialTimeout("tcp", srv.Addr().String(), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			sent := make([]byte, tc.size)
			rand.Read(sent)
			var wg sync.WaitGroup
			var werr error
			wg.Go(func() {
				for b := sent; len(b) > 0; b = b[min(tc.chunk, len(b)):] {
					if _, werr = c.Write(b[:min(tc.chunk, len(b))]); werr != nil {
						return
					}
				}
				werr = c.(*net.TCPConn).CloseWrite()
			})
			time.Sleep(tc.stall)
			got, err := io.ReadAll(c) // to the server's FIN, which follows the echo of ours
			wg.Wait()
			if err != nil || werr != nil {
				t.Fatalf("read %d of %d bytes: %v; write: %v", len(got), len(sent), err, werr)
			}
			if !bytes.Equal(got, sent) {
				t.Fatalf("echo of %d bytes: got %d, not the same bytes", len(sent), len(got))
			}
		})
	}
}
