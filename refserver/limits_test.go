//go:build linux

package refserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMaxConns: with MaxConns N, the N+1th client is accepted and closed at once, so it
// reads end of stream (FIN, not RST, not a wait in the accept queue) while the N first still
// echo; Stats counts it as refused. Once one of the N leaves, a new client is served.
func TestMaxConns(t *testing.T) {
	const n = 3
	noLeaks(t)
	srv := startServer(t, Config{MaxConns: n, Handler: Echo{}})
	var first []*net.TCPConn
	for i := range n {
		c := dial(t, srv.Addr())
		// A round trip proves the server accepted and admitted it before the next one comes.
		if err := roundTrip(c, fmt.Appendf(nil, "client %d", i)); err != nil {
			t.Fatalf("client %d of %d: %v", i, n, err)
		}
		first = append(first, c)
	}

	extra := dial(t, srv.Addr())
	start := time.Now()
	extra.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err := readEOF(extra)
	took := time.Since(start)
	if err != nil || got != 0 {
		t.Fatalf("client %d over MaxConns %d: read %d bytes, %v; want end of stream at once", n+1, n, got, err)
	}
	if took > 500*time.Millisecond {
		t.Errorf("client %d over MaxConns %d read end of stream after %v; want it at once", n+1, n, took)
	}
	t.Logf("client %d over MaxConns %d read end of stream after %v", n+1, n, took)
	// The refusal is counted before close(2), and the client read the FIN after it.
	if st := srv.Stats(); st.Refused != 1 || st.Open != n || st.Accepted != n {
		t.Errorf("stats after one refusal: %s; want open %d, accepted %d, refused 1", st, n, n)
	}
	for i, c := range first {
		if err := roundTrip(c, fmt.Appendf(nil, "still here %d", i)); err != nil {
			t.Errorf("client %d after the refusal: %v", i, err)
		}
	}

	// One leaves: room for one more.
	first[0].Close()
	waitStats(t, srv, "the server to close client 0", func(st Stats) bool { return st.Open == n-1 })
	c := dial(t, srv.Addr())
	if err := roundTrip(c, []byte("the next one")); err != nil {
		t.Errorf("a client after one left: %v", err)
	}
	if st := srv.Stats(); st.Refused != 1 || st.Open != n || st.Accepted != n+1 {
		t.Errorf("stats: %s; want open %d, accepted %d, refused 1", st, n, n+1)
	}
}

// TestIdleTimeout: a silent client is closed (end of stream) about IdleTimeout after it
// connected; a client that keeps talking, or keeps taking bytes, is not.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	// The upper bound: the loop's timer fires late by scheduling only, tens of milliseconds
	// on a loaded machine under -race; a second, not two idle periods.
	const slack = 700 * time.Millisecond

	t.Run("silent and talking", func(t *testing.T) {
		noLeaks(t)
		srv := startServer(t, Config{IdleTimeout: idle, Handler: Echo{}, Loops: 1}) // one idle list for both
		talker := dial(t, srv.Addr())
		if err := roundTrip(talker, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		silent := dial(t, srv.Addr())
		talked := make(chan error, 1)
		go func() {
			// A byte every idle/3 for 4 idle periods: never idle for long.
			for i := range 12 {
				time.Sleep(idle / 3)
				if err := roundTrip(talker, []byte{'a' + byte(i)}); err != nil {
					talked <- fmt.Errorf("round trip %d, %v after start: %w", i, time.Since(start), err)
					return
				}
			}
			talked <- nil
		}()
		n, err := readEOF(silent)
		took := time.Since(start)
		if err != nil || n != 0 {
			t.Fatalf("silent client: %d bytes, %v; want end of stream", n, err)
		}
		// The server's clock for the connection starts at accept, a little after our
		// connect returned: allow it a few milliseconds early.
		if took < idle-20*time.Millisecond || took > idle+slack {
			t.Errorf("silent client closed %v after connect; want about %v", took, idle)
		}
		t.Logf("silent client read end of stream %v after connect (IdleTimeout %v)", took, idle)
		if err := <-talked; err != nil {
			t.Errorf("talking client: %v", err)
		}
		// The talker outlived four idle periods, and it is idle now: it goes in its turn.
		if n, err := readEOF(talker); err != nil || n != 0 {
			t.Errorf("talker, once silent: %d bytes, %v; want end of stream", n, err)
		}
	})

	// A client that sends nothing but keeps taking what the server writes is active; and,
	// while it is, a silent client that connected after it is still closed on time.
	t.Run("taking only", func(t *testing.T) {
		noLeaks(t)
		// One loop: the two connections share its idle list.
		srv := startServer(t, Config{IdleTimeout: idle, Handler: downloadHandler{}, MaxOutput: 4 << 20, Loops: 1})
		d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			// A small receive buffer, set before connect so that the window says so: the
			// download trickles as fast as we read, not into kernel buffers at once.
			var err error
			rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<10) })
			return err
		}}
		nc, err := d.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		taker := nc.(*net.TCPConn)
		t.Cleanup(func() { taker.Close() })
		taker.SetDeadline(time.Now().Add(connDeadline))
		if _, err := taker.Write([]byte{'D'}); err != nil { // the last byte it ever sends
			t.Fatal(err)
		}
		if _, err := io.ReadFull(taker, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		silent := dial(t, srv.Addr())

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var took int64
		var terr error
		wg.Go(func() {
			buf := make([]byte, 4<<10)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				n, err := taker.Read(buf)
				took += int64(n)
				if err != nil {
					terr = fmt.Errorf("%v after start, %d bytes taken: %w", time.Since(start), took, err)
					return
				}
			}
		})
		n, err := readEOF(silent)
		closed := time.Since(start)
		close(stop)
		wg.Wait()
		if err != nil || n != 0 {
			t.Fatalf("silent client: %d bytes, %v; want end of stream", n, err)
		}
		if closed < idle-20*time.Millisecond || closed > idle+slack {
			t.Errorf("silent client closed %v after connect, while an older connection kept taking bytes; want about %v", closed, idle)
		}
		t.Logf("silent client closed after %v; meanwhile the taker took %d bytes", closed, took)
		if terr != nil {
			t.Errorf("taker, which took bytes all along: %v", terr)
		}
		if took >= downloadSize {
			t.Errorf("the taker took all %d bytes already: the test wants it still taking", took)
		}
	})
}

// downloadSize is what downloadHandler writes: at 4 KiB per 20 ms, seconds of taking.
const downloadSize = 1 << 20

// downloadHandler answers a 'D' with downloadSize bytes, most of them queued in the Conn's
// output: a connection that the server writes to, and reads nothing from.
type downloadHandler struct{}

func (downloadHandler) OnOpen(c *Conn) {
	// A small, fixed send buffer (SO_SNDBUF turns autotuning off): the output drains a
	// little at each EPOLLOUT instead of all into the kernel at once.
	if err := unix.SetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<10); err != nil {
		fmt.Fprintln(os.Stderr, "SO_SNDBUF:", err)
		c.Close()
	}
}

func (downloadHandler) OnData(c *Conn, data []byte) int {
	if len(data) > 0 && data[0] == 'D' {
		if _, err := c.Write(make([]byte, downloadSize)); err != nil && !errors.Is(err, ErrClosed) {
			fmt.Fprintln(os.Stderr, "download:", err)
		}
	}
	return len(data)
}

func (downloadHandler) OnClose(*Conn, error) {}

// TestMaxConnsPerIP: with MaxConnsPerIP 3, a greedy client address (127.0.0.2) that opens
// ten connections holds three, and its seven others read end of stream at once (FIN), while
// another address (127.0.0.1) is served as if the greedy one were not there. The count of
// an address goes when its last connection does: the map holds the addresses connected now.
func TestMaxConnsPerIP(t *testing.T) {
	const perIP, greedy = 3, 10
	noLeaks(t)
	srv := startServer(t, Config{MaxConnsPerIP: perIP, Handler: Echo{}})
	from := func(src string) *net.TCPConn {
		t.Helper()
		// bind(2) before connect: the whole of 127.0.0.0/8 is this machine's, so each
		// loopback address is a client of its own.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(connDeadline))
		return c.(*net.TCPConn)
	}
	addresses := func() int {
		srv.adm.perIPMu.Lock()
		defer srv.adm.perIPMu.Unlock()
		return len(srv.adm.perIP)
	}

	var held []*net.TCPConn
	var slowest time.Duration
	for i := range greedy {
		c := from("127.0.0.2")
		if i < perIP {
			// A round trip: admitted, and counted before the next one comes.
			if err := roundTrip(c, fmt.Appendf(nil, "greedy %d", i)); err != nil {
				t.Fatalf("greedy client %d of %d allowed: %v", i, perIP, err)
			}
			held = append(held, c)
			continue
		}
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := readEOF(c); n != 0 || err != nil {
			t.Fatalf("greedy client %d over the cap of %d: %d bytes, %v; want end of stream", i, perIP, n, err)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("127.0.0.2 opened %d connections: %d held, %d refused, each read end of stream within %v", greedy, perIP, greedy-perIP, slowest)
	if slowest > 500*time.Millisecond {
		t.Errorf("a refused client waited %v for end of stream; want it at once", slowest)
	}
	// Another address has its own count.
	for i := range perIP {
		if err := roundTrip(from("127.0.0.1"), fmt.Appendf(nil, "modest %d", i)); err != nil {
			t.Errorf("client %d from 127.0.0.1 beside the greedy one: %v", i, err)
		}
	}
	if st := srv.Stats(); st.Open != 2*perIP || st.Refused != greedy-perIP {
		t.Errorf("stats: %s; want open %d, refused %d", st, 2*perIP, greedy-perIP)
	}
	if n := addresses(); n != 2 {
		t.Errorf("%d addresses counted; want 2", n)
	}

	// The greedy address leaves: it is forgotten, and welcome again.
	for _, c := range held {
		c.Close()
	}
	waitStats(t, srv, "the greedy connections closed", func(st Stats) bool { return st.Open == perIP })
	if n := addresses(); n != 1 {
		t.Errorf("%d addresses counted once 127.0.0.2 left; want 1", n)
	}
	if err := roundTrip(from("127.0.0.2"), []byte("back")); err != nil {
		t.Errorf("127.0.0.2 after it left: %v", err)
	}
}

// TestMaxConnsFlood: MaxConns 8, held by clients that make round trips, while 16 flooders
// connect again and again for a second, each refused: accepted and closed, so it reads end
// of stream. One loop serves both. It accepts at most a batch of 64 per wake-up between
// serving its established connections, so their round trips stay fast: a flood beyond the
// limit cannot starve the connections within it.
func TestMaxConnsFlood(t *testing.T) {
	const held, flooders = 8, 16
	const flood, maxFlood = time.Second, 20000 // bounded in time and in connections
	noLeaks(t)
	srv := startServer(t, Config{MaxConns: held, Handler: Echo{}, Loops: 1})
	conns := make([]*net.TCPConn, held)
	for i := range conns {
		conns[i] = dial(t, srv.Addr())
		if err := roundTrip(conns[i], []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	quiet, err := roundTrips(conns, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var refused, failed atomic.Int64
	var ferr atomic.Value
	var wg sync.WaitGroup
	for range flooders {
		wg.Go(func() {
			for refused.Load()+failed.Load() < maxFlood {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialE(srv.Addr())
				if err == nil {
					var n int64
					if n, err = readEOF(c); err == nil && n > 0 {
						err = fmt.Errorf("a flooder over MaxConns got %d bytes", n)
					}
					c.Close()
				}
				if err != nil {
					failed.Add(1)
					ferr.Store(err)
					continue
				}
				refused.Add(1)
			}
		})
	}
	during, err := roundTrips(conns, flood)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("a held client during the flood: %v", err)
	}
	t.Logf("%d held clients' round trips, quiet: %s", held, quiet)
	t.Logf("the same during a flood of %d refused connections in %v: %s", refused.Load(), flood, during)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d flooders did not read end of stream; the last: %v", n, ferr.Load())
	}
	if refused.Load() < 100 {
		t.Errorf("only %d connections refused: not a flood", refused.Load())
	}
	if st := srv.Stats(); st.Refused != uint64(refused.Load()) || st.Open != held {
		t.Errorf("stats %s; want %d refused, %d open", st, refused.Load(), held)
	}
	if during.max > time.Second || during.n < held {
		t.Errorf("held clients during the flood: %s; want each served, none waiting a second", during)
	}
}

// latencies summarises round-trip times.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func (l latencies) String() string {
	return fmt.Sprintf("%d round trips, median %v, 99th percentile %v, slowest %v", l.n,
		l.p50.Round(time.Microsecond), l.p99.Round(time.Microsecond), l.max.Round(time.Microsecond))
}

// roundTrips has every conn make 64-byte round trips, one every 5 ms, for d.
func roundTrips(conns []*net.TCPConn, d time.Duration) (latencies, error) {
	var mu sync.Mutex
	var all []time.Duration
	errs := make(chan error, len(conns))
	end := time.Now().Add(d)
	for _, c := range conns {
		go func() {
			msg := make([]byte, 64)
			var mine []time.Duration
			var err error
			for time.Now().Before(end) {
				t0 := time.Now()
				if err = roundTrip(c, msg); err != nil {
					break
				}
				mine = append(mine, time.Since(t0))
				time.Sleep(5 * time.Millisecond)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
			errs <- err
		}()
	}
	var err error
	for range conns {
		err = errors.Join(err, <-errs)
	}
	if len(all) == 0 {
		return latencies{}, errors.Join(err, errors.New("no round trip"))
	}
	slices.Sort(all)
	return latencies{n: len(all), p50: all[len(all)/2], p99: all[len(all)*99/100], max: all[len(all)-1]}, err
}
