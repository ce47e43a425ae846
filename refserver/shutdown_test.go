//go:build linux

package refserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestShutdown: Shutdown answers every byte the server's kernel had received (acknowledged)
// before it began, then sends FIN; it returns nil once all are closed, the port refuses
// connections, and the process is back to the goroutines and descriptors it had before New.
func TestShutdown(t *testing.T) {
	t.Run("drains", func(t *testing.T) {
		base := takeBaseline(t)
		srv, served := serveNew(t, Config{Handler: Echo{}})

		// Talkers: a round trip, then 1 KiB more that the server's kernel has acknowledged
		// but that is not echoed yet, or not read yet: data in flight at the shutdown.
		const talkers = 8
		var conns []*net.TCPConn
		want := map[*net.TCPConn][]byte{}
		for i := range talkers {
			c := dial(t, srv.Addr())
			first, last := make([]byte, 1<<10), make([]byte, 1<<10)
			rand.Read(first)
			rand.Read(last)
			if err := roundTrip(c, first); err != nil {
				t.Fatalf("talker %d: %v", i, err)
			}
			if _, err := c.Write(last); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			want[c] = last
		}
		for _, c := range conns {
			if err := waitAcked(c, 2*time.Second); err != nil {
				t.Fatalf("the last 1 KiB acknowledged: %v", err)
			}
		}
		// A silent client, and a flooder that writes without reading until TCP's flow
		// control stops it: the server then holds output for it and reads no more.
		silent := dial(t, srv.Addr())
		flooder := dial(t, srv.Addr())
		fl := startFlood(flooder, 64<<20)
		written, err := fl.waitStalled()
		if err != nil {
			t.Fatal(err)
		}
		// What the server's kernel has acknowledged: written, less what our kernel still
		// holds unsent or unacknowledged (SIOCOUTQ). The server owes the echo of all of it,
		// much more than one 64 KiB read: it sits in the server's receive queue, unread
		// because the server is in backpressure.
		_, unacked, err := queued(flooder)
		if err != nil {
			t.Fatal(err)
		}
		acked := written - int64(unacked)

		start := time.Now()
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shut <- srv.Shutdown(ctx)
		}()

		// Every client reads to the end; each must end with FIN (nil), not ECONNRESET.
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() {
				defer c.Close()
				got, err := io.ReadAll(c)
				if err != nil {
					t.Errorf("talker %s: %v after %d bytes; want its echo, then end of stream", c.LocalAddr(), err, len(got))
				} else if !bytes.Equal(got, want[c]) {
					t.Errorf("talker %s: %d bytes; want its last %d echoed", c.LocalAddr(), len(got), len(want[c]))
				}
			})
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer silent.Close()
			if n, err := readEOF(silent); n != 0 || err != nil {
				t.Errorf("silent client: %d bytes, %v; want end of stream", n, err)
			}
		}()
		var echoed int64
		go func() {
			defer wg.Done()
			defer flooder.Close()
			var err error
			echoed, err = fl.readEcho()
			if err != nil {
				t.Errorf("flooder: %v", err)
			}
		}()
		wg.Wait()
		fl.stop() // its connection is closed: it ends with an error, or halts
		if err := <-shut; err != nil {
			t.Errorf("Shutdown = %v; want nil once every client left", err)
		}
		t.Logf("Shutdown returned after %v; the flooder had written %d KiB when stalled, %d KiB of them acknowledged, and got %d KiB echoed, then FIN",
			time.Since(start).Round(time.Millisecond), written>>10, acked>>10, echoed>>10)
		if echoed < acked {
			t.Errorf("the flooder got %d KiB echoed; the server's kernel had acknowledged %d KiB before Shutdown", echoed>>10, acked>>10)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve = %v", err)
		}
		if st := srv.Stats(); st.Open != 0 || st.Accepted != talkers+2 || st.Closed != talkers+2 {
			t.Errorf("stats after Shutdown: %s", st)
		}
		// The listener is closed: the kernel answers a SYN with RST.
		if c, err := net.DialTimeout("tcp", srv.Addr().String(), 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			if c != nil {
				c.Close()
			}
			t.Errorf("connect after Shutdown: %v; want ECONNREFUSED", err)
		}
		base.check(t)
	})

	// A client that reads our FIN but never sends its own keeps its connection open; at the
	// deadline Shutdown closes it and says so.
	t.Run("deadline", func(t *testing.T) {
		base := takeBaseline(t)
		srv, served := serveNew(t, Config{Handler: Echo{}})
		c := dial(t, srv.Addr())
		if err := roundTrip(c, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		const d = 300 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		start := time.Now()
		err := srv.Shutdown(ctx)
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v; want context.DeadlineExceeded", err)
		}
		if took < d || took > d+time.Second {
			t.Errorf("Shutdown returned after %v; want just after its deadline %v", took, d)
		}
		if n, err := readEOF(c); n != 0 || err != nil {
			t.Errorf("client: %d bytes, %v; want end of stream", n, err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve = %v", err)
		}
		if st := srv.Stats(); st.Open != 0 || st.Closed != 1 {
			t.Errorf("stats after Shutdown: %s", st)
		}
		c.Close()
		base.check(t)
	})
}

// TestShutdownStopsAccepting: Shutdown marks the server draining, then wakes the loops. A
// loop that finds a connection in the accept queue in between must not accept it: the loop
// begins its drain instead, and the connection is reset with the listener. Here the wake-up
// never comes, so the listener's readiness alone must end the loop.
func TestShutdownStopsAccepting(t *testing.T) {
	noLeaks(t)
	srv, served := serveNew(t, Config{Handler: Echo{}, Loops: 1})
	srv.state.Store(stateDraining) // Shutdown's first step, and no wake-up after it
	// The kernel finishes the handshake and queues the connection; the loop may be quick
	// enough to close the listener, which resets it, before connect returns.
	c, err := dialE(srv.Addr())
	if err == nil {
		defer c.Close()
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the loop did not drain: it went on accepting after Shutdown began")
	}
	if c != nil {
		if n, err := readEOF(c); n != 0 || !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the queued client: %d bytes, %v; want ECONNRESET: the listener closed with it in the queue", n, err)
		}
	}
	if st := srv.Stats(); st.Accepted != 0 {
		t.Errorf("stats %s; want nothing accepted", st)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

// flood writes a reproducible random stream to a connection in 64 KiB writes, and reads
// back its echo, checking it against the same stream.
type flood struct {
	c        *net.TCPConn
	seed     [32]byte
	size     int64
	written  atomic.Int64
	done     chan struct{} // closed when the writer returns, err then says why
	err      error
	halt     chan struct{}
	haltOnce sync.Once
}

func startFlood(c *net.TCPConn, size int64) *flood {
	f := &flood{c: c, size: size, done: make(chan struct{}), halt: make(chan struct{})}
	rand.Read(f.seed[:])
	go func() {
		defer close(f.done)
		src := mrand.NewChaCha8(f.seed)
		buf := make([]byte, 64<<10)
		for f.written.Load() < size {
			select {
			case <-f.halt:
				return
			default:
			}
			n := min(int64(len(buf)), size-f.written.Load())
			src.Read(buf[:n])
			if _, err := c.Write(buf[:n]); err != nil {
				f.err = err
				return
			}
			f.written.Add(n)
		}
		f.err = c.CloseWrite() // our FIN after the last byte
	}()
	return f
}

// waitStalled waits until the writes stop making progress: the server's receive queue and
// our send queue are full, and the server reads no more. It returns what was written.
func (f *flood) waitStalled() (int64, error) {
	last, since := int64(-1), time.Now()
	err := poll(10*time.Second, func() (bool, error) {
		w := f.written.Load()
		if w != last {
			last, since = w, time.Now()
		}
		if w >= f.size {
			return false, fmt.Errorf("all %d bytes written without a stall: no backpressure", w)
		}
		return w >= 1<<20 && time.Since(since) > 250*time.Millisecond, nil
	})
	if err != nil {
		return last, fmt.Errorf("waiting for the flood to stall: %w", err)
	}
	// The stall is the kernel's doing: it holds what we wrote and could not pass on.
	_, out, err := queued(f.c)
	if err == nil && out == 0 {
		err = fmt.Errorf("stalled with an empty send queue (SIOCOUTQ 0)")
	}
	return last, err
}

// readEcho reads the echo to end of stream and checks that it is the stream we sent, from
// its start: a prefix of it when the server stopped reading early (Shutdown).
func (f *flood) readEcho() (int64, error) {
	src := mrand.NewChaCha8(f.seed)
	buf, want := make([]byte, 64<<10), make([]byte, 64<<10)
	var n int64
	for {
		m, err := f.c.Read(buf)
		if m > 0 {
			src.Read(want[:m])
			if !bytes.Equal(buf[:m], want[:m]) {
				return n, fmt.Errorf("the echo differs from what was sent in bytes %d to %d", n, n+int64(m))
			}
			n += int64(m)
			// A write is counted when it returns, and its start may be echoed before.
			if w := f.written.Load() + int64(len(buf)); n > w {
				return n, fmt.Errorf("echoed %d bytes, more than the %d written", n, w)
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("after %d bytes echoed: %w", n, err)
		}
	}
}

// wait waits, at most d, for the writer to return, and says how it ended.
func (f *flood) wait(d time.Duration) error {
	select {
	case <-f.done:
		return f.err
	case <-time.After(d):
		return fmt.Errorf("the flood writer is still writing after %v, at %d bytes", d, f.written.Load())
	}
}

// stop ends the writer (its connection is closed or about to be) and waits for it.
func (f *flood) stop() error {
	f.haltOnce.Do(func() { close(f.halt) })
	return f.wait(5 * time.Second)
}
