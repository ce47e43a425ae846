//go:build linux

package refserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/testkit"
	"portproof/refserver/sock"
)

// The helpers the server's tests share. Every test sends traffic to loopback only and lets
// the kernel choose the port (port 0).

// connDeadline bounds every client connection of the tests: a test that hangs fails with a
// timeout naming the connection, not with the test binary's panic ten minutes later.
const connDeadline = 20 * time.Second

// startServer runs a Server with cfg (serveNew) until the test ends, then shuts it down and
// checks that both Shutdown and Serve answered nil.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	srv, served := serveNew(t, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve has not returned 5s after Shutdown")
		}
	})
	return srv
}

// serveNew runs a Server with cfg (Addr defaults to 127.0.0.1:0) and returns it with the
// channel Serve's answer comes on, for a test that shuts it down itself; startServer does it
// when the test ends.
func serveNew(t testing.TB, cfg Config) (*Server, <-chan error) {
	t.Helper()
	if !cfg.Addr.IsValid() {
		cfg.Addr = netip.MustParseAddrPort("127.0.0.1:0")
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Addr, err)
	}
	if srv.Addr().Port() == 0 || srv.Addr().Addr() != cfg.Addr.Addr() {
		t.Fatalf("Addr() = %s: want %s with the port the kernel chose", srv.Addr(), cfg.Addr.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	return srv, served
}

// dialE connects to ap with connDeadline on the connection (testkit.Dial); for goroutines,
// which must not call t.Fatal.
func dialE(ap netip.AddrPort) (*net.TCPConn, error) {
	return testkit.Dial(ap, connDeadline)
}

// dial connects to ap and closes the connection when the test ends.
func dial(t *testing.T, ap netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := dialE(ap)
	if err != nil {
		t.Fatalf("dial %s: %v", ap, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads back as many bytes, which an echo must return unchanged.
func roundTrip(c net.Conn, msg []byte) error {
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read the echo of %d bytes: %w", len(msg), err)
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo: got %q, want %q", trim(got), trim(msg))
	}
	return nil
}

func trim(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// readEOF reads c to its end and reports how many bytes came and how the stream ended: nil
// for end of stream (the peer's FIN), the error otherwise (ECONNRESET for an RST, a timeout).
func readEOF(c net.Conn) (int64, error) {
	return io.Copy(io.Discard, c)
}

// control runs f on the descriptor of the client's end of c.
func control(c *net.TCPConn, f func(fd int)) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}

// clientTuple is the 5-tuple of the client's end of c, from the kernel.
func clientTuple(c *net.TCPConn) (sock.Tuple, error) {
	var tup sock.Tuple
	var terr error
	if err := control(c, func(fd int) { tup, terr = sock.TupleOf(fd) }); err != nil {
		return sock.Tuple{}, err
	}
	return tup, terr
}

// queued reports the bytes the kernel holds for the client's end of c: unread in its
// receive queue (SIOCINQ) and unacknowledged in its send queue (SIOCOUTQ).
func queued(c *net.TCPConn) (in, out int, err error) {
	var ierr, oerr error
	if err := control(c, func(fd int) {
		in, ierr = unix.IoctlGetInt(fd, unix.SIOCINQ)
		out, oerr = unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	}); err != nil {
		return 0, 0, err
	}
	return in, out, errors.Join(ierr, oerr)
}

// waitAcked waits, at most d, until the peer's kernel has acknowledged every byte c wrote
// (SIOCOUTQ is 0): the bytes are then in the server's receive queue or already read.
func waitAcked(c *net.TCPConn, d time.Duration) error {
	return poll(d, func() (bool, error) {
		_, out, err := queued(c)
		return out == 0, err
	})
}

// poll calls cond every few milliseconds until it is true, fails, or d has passed.
func poll(d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not so after %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStats polls srv.Stats until cond holds, at most 5s.
func waitStats(t *testing.T, srv *Server, what string, cond func(Stats) bool) Stats {
	t.Helper()
	var st Stats
	if err := poll(5*time.Second, func() (bool, error) { st = srv.Stats(); return cond(st), nil }); err != nil {
		t.Fatalf("waiting for %s: %v; stats: %s", what, err, st)
	}
	return st
}

// baseline is what a test checks the process returns to: its goroutines and descriptors.
type baseline struct {
	goroutines, fds int
}

// takeBaseline measures once the Go runtime's own descriptors exist (the netpoller's epoll
// instance and eventfd appear with the first net.Conn and stay), so that they are not
// counted as a leak.
func takeBaseline(t testing.TB) baseline {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	fds, err := sock.OpenDescriptors()
	if err != nil {
		t.Fatal(err)
	}
	return baseline{goroutines: runtime.NumGoroutine(), fds: fds}
}

// check waits, at most 5s, for goroutines and descriptors to come back to the baseline.
func (b baseline) check(t testing.TB) {
	t.Helper()
	var g, fds int
	err := poll(5*time.Second, func() (bool, error) {
		var err error
		g = runtime.NumGoroutine()
		fds, err = sock.OpenDescriptors()
		return g <= b.goroutines && fds <= b.fds, err
	})
	if err != nil {
		buf := make([]byte, 1<<16)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutines %d (baseline %d), descriptors %d (baseline %d): %v\n%s",
			g, b.goroutines, fds, b.fds, err, buf)
	}
}

// noLeaks checks, once the test and its other cleanups are done, that the goroutines and
// descriptors it started are gone. Call it first: cleanups run last registered first, so
// its check comes after the servers have shut down and the clients have closed.
func noLeaks(t testing.TB) {
	t.Helper()
	base := takeBaseline(t)
	t.Cleanup(func() { base.check(t) })
}
