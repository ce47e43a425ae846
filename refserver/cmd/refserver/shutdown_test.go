//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestShutdownUnderLoad: SIGTERM while 100 clients stream. Five of them write as fast as
// they can and read nothing until the signal: the server is in backpressure on those, and
// what they sent waits in its receive queues, megabytes acknowledged by its kernel and not
// read. After SIGTERM the listener closes and a connect is refused; no connection is
// accepted but the 100; every client gets the echo of at least every byte the server's
// kernel had acknowledged before the signal, then FIN, not RST; and refserver exits 0, well
// within -shutdown-timeout.
func TestShutdownUnderLoad(t *testing.T) {
	const clients, slow = 100, 5
	const timeout = 10 * time.Second
	c := startCLI(t, "-addr", "127.0.0.1:0", "-mode", "echo", "-quiet", "-shutdown-timeout", timeout.String())
	signaled := make(chan struct{})
	streams := make([]*stream, clients)
	for i := range streams {
		if i == slow {
			// The slow ones first, until TCP's flow control holds them; then the others
			// stream for a while.
			for j, s := range streams[:slow] {
				if err := s.waitStalled(); err != nil {
					t.Fatalf("client %d: %v", j, err)
				}
			}
		}
		s, err := startStream(c.addr, i < slow, signaled)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		streams[i] = s
		t.Cleanup(s.close)
	}
	time.Sleep(200 * time.Millisecond)
	acked := make([]int64, clients)
	var ackedSlow, ackedAll int64
	for i, s := range streams {
		var err error
		if acked[i], err = s.acked(); err != nil {
			t.Fatal(err)
		}
		ackedAll += acked[i]
		if s.slow {
			ackedSlow = max(ackedSlow, acked[i])
		}
	}
	sent := c.signal(t, unix.SIGTERM)
	close(signaled)

	if _, err := c.out.Wait("SIGTERM: ", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Once the listener is closed, the kernel refuses a connect with RST.
	if _, err := c.out.Wait("the listener is gone", 5*time.Second); err != nil {
		t.Fatalf("%v\nstdout:\n%s", err, c.out)
	}
	closed := time.Since(sent)
	for i := range 3 {
		p, err := net.DialTimeout("tcp", c.addr.String(), 2*time.Second)
		if err == nil {
			p.Close()
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("connect %d after the listener's close: %v; want ECONNREFUSED", i, err)
		}
	}

	var echoed int64
	for i, s := range streams {
		select {
		case <-s.rdone:
		case <-time.After(timeout):
			t.Fatalf("client %d: no end of stream %v after SIGTERM", i, timeout)
		}
		echoed += s.echoed
		if s.rerr != nil {
			t.Errorf("client %d (slow %v): %v; want the echo, then end of stream (FIN)", i, s.slow, s.rerr)
		} else if s.echoed < acked[i] {
			t.Errorf("client %d (slow %v): %d bytes echoed; the server's kernel had acknowledged %d before SIGTERM", i, s.slow, s.echoed, acked[i])
		}
	}
	code := c.wait(t, timeout)
	took := time.Since(sent)
	t.Logf("SIGTERM with %d clients streaming, %d KiB acknowledged by the server's kernel (a slow reader: up to %d KiB); the listener was closed after %v; %d KiB echoed in all, every client ended with FIN; exit %d after %v",
		clients, ackedAll>>10, ackedSlow>>10, closed.Round(time.Millisecond), echoed>>10, code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d; want 0\nstderr: %s", code, c.stderr)
	}
	if took > timeout {
		t.Errorf("exited %v after SIGTERM; want within -shutdown-timeout %v", took, timeout)
	}
	want := fmt.Sprintf("stopped: open 0 (accepted %d, closed %d, shed 0, refused 0, reset 0, cut 0)", clients, clients)
	if _, err := c.out.Wait(want, 0); err != nil {
		t.Errorf("%v\nstdout:\n%s", err, c.out)
	}
	if line, err := c.out.Wait("shutdown: ", 0); err == nil {
		t.Errorf("a drained shutdown says %q", line)
	}
}

// stream is a client that writes a reproducible random stream and reads its echo, checking
// it against the same stream: 8 KiB every 10 ms. A slow one writes 64 KiB at a time without
// a pause, and reads nothing until signaled is closed. On end of stream it stops writing and
// closes: FIN.
type stream struct {
	c       *net.TCPConn
	slow    bool
	written atomic.Int64
	stop    chan struct{}
	wdone   chan struct{}
	rdone   chan struct{} // closed when the reader has returned; then:
	echoed  int64
	rerr    error // nil for the whole echo, identical, then end of stream
	once    sync.Once
}

const streamChunk, floodChunk = 8 << 10, 64 << 10

// startStream connects and makes one round trip, so the server has accepted the client
// before it returns.
func startStream(ap netip.AddrPort, slow bool, signaled <-chan struct{}) (*stream, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	if slow {
		// Small buffers on our side, set before connect so that the window says so: the
		// stall comes sooner, and what the server's kernel holds is the most of it.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var err error
			rc.Control(func(fd uintptr) {
				err = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<10),
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 32<<10))
			})
			return err
		}
	}
	nc, err := d.Dial("tcp", ap.String())
	if err != nil {
		return nil, err
	}
	s := &stream{c: nc.(*net.TCPConn), slow: slow, stop: make(chan struct{}), wdone: make(chan struct{}), rdone: make(chan struct{})}
	s.c.SetDeadline(time.Now().Add(connDeadline))
	var seed [32]byte
	rand.Read(seed[:])
	wsrc, rsrc := mrand.NewChaCha8(seed), mrand.NewChaCha8(seed)
	buf, want := make([]byte, streamChunk), make([]byte, streamChunk)
	wsrc.Read(buf)
	rsrc.Read(want)
	if _, err := s.c.Write(buf); err != nil {
		s.c.Close()
		return nil, err
	}
	s.written.Add(streamChunk)
	if _, err := io.ReadFull(s.c, buf); err != nil || !bytes.Equal(buf, want) {
		s.c.Close()
		return nil, fmt.Errorf("the first round trip: %v", err)
	}
	s.echoed = streamChunk
	pace := 10 * time.Millisecond
	if slow {
		buf, pace = make([]byte, floodChunk), 0
	}
	go func() {
		defer close(s.wdone)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(pace):
			}
			wsrc.Read(buf)
			n, err := s.c.Write(buf)
			s.written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(s.rdone)
		defer s.close()
		if slow {
			<-signaled
		}
		rbuf, want := make([]byte, 64<<10), make([]byte, 64<<10)
		for {
			m, err := s.c.Read(rbuf)
			if m > 0 {
				rsrc.Read(want[:m])
				if !bytes.Equal(rbuf[:m], want[:m]) {
					s.rerr = fmt.Errorf("the echo differs from what was sent in bytes %d to %d", s.echoed, s.echoed+int64(m))
					return
				}
				s.echoed += int64(m)
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				s.rerr = fmt.Errorf("after %d bytes echoed: %w", s.echoed, err)
				return
			}
		}
	}()
	return s, nil
}

// waitStalled waits, at most 5s, until the writes have made no progress for 200 ms.
func (s *stream) waitStalled() error {
	last, since, deadline := int64(-1), time.Now(), time.Now().Add(5*time.Second)
	for time.Now().Before(deadline) {
		if w := s.written.Load(); w != last {
			last, since = w, time.Now()
		} else if time.Since(since) > 200*time.Millisecond {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("still writing after 5s, at %d bytes: no backpressure", last)
}

// acked is what the server's kernel has acknowledged: what the writes returned, less what
// our kernel still holds unacknowledged (SIOCOUTQ). A write under way makes it smaller, never
// larger: it is a lower bound of what the server had received.
func (s *stream) acked() (int64, error) {
	w := s.written.Load()
	rc, err := s.c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var out int
	var ierr error
	if err := rc.Control(func(fd uintptr) { out, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return 0, err
	}
	return w - int64(out), ierr
}

// close stops the writer and closes the connection: a FIN, since everything was read.
func (s *stream) close() {
	s.once.Do(func() {
		close(s.stop)
		<-s.wdone
		s.c.Close()
	})
}
