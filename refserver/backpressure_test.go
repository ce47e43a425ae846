//go:build linux

package refserver

import (
	"crypto/rand"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestBackpressure: a client writes 256 MiB and reads nothing for two seconds. The server
// stops reading it as soon as the kernel will not take its echo, so TCP's flow control
// stalls the client and the server's memory does not grow with what the client sent: its
// heap stays within 8 MiB of where it was (an echo connection in backpressure holds at most
// one read, 64 KiB; the rest is the collector's slack). The other connections of the same
// loop keep echoing meanwhile; and once the client reads, every byte comes back, in order.
func TestBackpressure(t *testing.T) {
	noLeaks(t)
	const size = 256 << 20
	const heapBound = 8 << 20
	const quiet = 2 * time.Second // how long the client reads nothing, from its first write
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
	stalled := time.Since(start)
	in, out, err := queued(c)
	if err != nil {
		t.Fatal(err)
	}
	if in == 0 {
		t.Errorf("the stalled client has no echo waiting (SIOCINQ 0): the stall is not the server's output backing up")
	}

	// Until the client has been quiet for long enough: the loop serves the others while the
	// flooder is stalled on it, and the heap is measured between their round trips.
	msg := make([]byte, 4<<10)
	var slowest time.Duration
	var growth int64
	var trips int
	for time.Since(start) < quiet {
		growth = max(growth, heapInuse()-before)
		for i, o := range others {
			rand.Read(msg)
			t0 := time.Now()
			if err := roundTrip(o, msg); err != nil {
				t.Fatalf("client %d during the stall: %v", i, err)
			}
			slowest = max(slowest, time.Since(t0))
			trips++
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("stalled after %d KiB written (of %d KiB) in %v; the client's kernel holds %d KiB unsent (SIOCOUTQ) and %d KiB of echo unread (SIOCINQ); over %v unread, the server's heap grew %d KiB at most",
		written>>10, size>>10, stalled.Round(time.Millisecond), out>>10, in>>10, quiet, growth>>10)
	t.Logf("%d round trips of 4 KiB on the same loop during the stall; the slowest took %v", trips, slowest)
	if growth > heapBound {
		t.Errorf("the server's heap grew %d KiB while the client did not read; want under %d KiB: it should stop reading, not queue", growth>>10, heapBound>>10)
	}
	if slowest > time.Second {
		t.Errorf("a round trip during the stall took %v", slowest)
	}
	if w := fl.written.Load(); w != written {
		t.Errorf("the flooder wrote on, %d bytes to %d, while it read nothing", written, w)
	}

	// Now read: all 256 MiB come back intact, then end of stream after our FIN.
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
