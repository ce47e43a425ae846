//go:build linux

package refserver

import (
	"crypto/rand"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestBackpressure: a client writes 64 MiB and reads nothing. The server stops reading it as
// soon as the kernel will not take its echo, so TCP's flow control stalls the client and the
// server's memory does not grow with what the client sent; the other connections of the same
// loop keep echoing; and once the client reads, every byte comes back, in order.
func TestBackpressure(t *testing.T) {
	noLeaks(t)
	const size = 64 << 20
	const heapBound = 8 << 20
	// One loop, so the flooder and the others share it. MaxOutput far above the flood: only
	// backpressure, not the output cap, may bound what the server holds.
	srv := startServer(t, Config{Handler: Echo{}, Loops: 1, MaxOutput: 1 << 30})
	others := make([]*net.TCPConn, 3)
	for i := range others {
		others[i] = dial(t, srv.Addr())
		if err := roundTrip(others[i], []byte("warm up")); err != nil {
			t.Fatal(err)
		}
	}
	before := heapInuse()

	c := dial(t, srv.Addr())
	fl := startFlood(c, size)
	t.Cleanup(func() { fl.stop() })
	start := time.Now()
	written, err := fl.waitStalled()
	if err != nil {
		t.Fatal(err)
	}
	growth := heapInuse() - before
	in, out, err := queued(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stalled after %d KiB written (of %d KiB) in %v; the client's kernel holds %d KiB unsent (SIOCOUTQ) and %d KiB of echo unread (SIOCINQ); the server's heap grew %d KiB",
		written>>10, size>>10, time.Since(start).Round(time.Millisecond), out>>10, in>>10, growth>>10)
	if growth > heapBound {
		t.Errorf("the server's heap grew %d KiB while the client did not read; want under %d KiB: it should stop reading, not queue", growth>>10, heapBound>>10)
	}
	if in == 0 {
		t.Errorf("the stalled client has no echo waiting (SIOCINQ 0): the stall is not the server's output backing up")
	}

	// The loop serves the others while the flooder is stalled on it.
	msg := make([]byte, 4<<10)
	var slowest time.Duration
	for range 10 {
		for i, o := range others {
			rand.Read(msg)
			t0 := time.Now()
			if err := roundTrip(o, msg); err != nil {
				t.Fatalf("client %d during the stall: %v", i, err)
			}
			slowest = max(slowest, time.Since(t0))
		}
	}
	t.Logf("30 round trips of 4 KiB on the same loop during the stall; the slowest took %v", slowest)
	if slowest > time.Second {
		t.Errorf("a round trip during the stall took %v", slowest)
	}
	if w := fl.written.Load(); w != written {
		t.Errorf("the flooder wrote on, %d bytes to %d, while it read nothing", written, w)
	}

	// Now read: all 64 MiB come back intact, then end of stream after our FIN.
	start = time.Now()
	echoed, err := fl.readEcho()
	if err != nil {
		t.Fatal(err)
	}
	if echoed != size {
		t.Errorf("echoed %d bytes, want %d", echoed, size)
	}
	if err := fl.wait(time.Second); err != nil {
		t.Errorf("the flooder's writes: %v", err)
	}
	t.Logf("the rest of the %d MiB echoed in %v, identical", size>>20, time.Since(start).Round(time.Millisecond))
}

// heapInuse is the process's heap in use after a collection: the server's buffers are in it
// (the test's own are a few 64 KiB buffers).
func heapInuse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
