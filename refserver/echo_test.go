//go:build linux

package refserver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"portproof/internal/testkit"
	"portproof/refserver/sock"
)

// TestEchoRandomChunks: 250 clients, all connected before any sends, each send a random payload (0 to 1 MiB) in
// random chunk sizes with random pauses, read the echo in random sizes with random pauses,
// half-close with shutdown(SHUT_WR), and must read back exactly what they sent (sha256),
// then end of stream: the server answers the client's FIN with its own once the echo is out.
// Two loops, sharing one listener, or with a listener each (SO_REUSEPORT).
func TestEchoRandomChunks(t *testing.T) {
	const clients = 250
	type run struct {
		name      string
		f         testkit.Family
		reusePort bool
	}
	runs := []run{{testkit.Families[0].Name, testkit.Families[0], false}, {testkit.Families[1].Name, testkit.Families[1], false}, {"ipv4 SO_REUSEPORT", testkit.Families[0], true}}
	for _, r := range runs {
		f := r.f
		t.Run(r.name, func(t *testing.T) {
			f.Require(t)
			noLeaks(t)
			srv := startServer(t, Config{Addr: f.Any(), Handler: Echo{}, Loops: 2, ReusePort: r.reusePort})
			if r.reusePort {
				// A listener per loop, all on the one address and port.
				lfds := srv.Listeners()
				if len(lfds) != 2 {
					t.Fatalf("%d listeners with SO_REUSEPORT and 2 loops; want 2", len(lfds))
				}
				for _, fd := range lfds {
					if ap, err := sock.LocalAddr(fd); err != nil || ap != srv.Addr() {
						t.Errorf("listener %d: getsockname %s, %v; want %s", fd, ap, err, srv.Addr())
					}
				}
			}
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			// Every client connects first, and the server holds them all before the first
			// byte: the connections are concurrent by construction, and the dials are not
			// timed while 250 goroutines hash megabytes on two cores.
			var wg, connected sync.WaitGroup
			begin := make(chan struct{})
			var mu sync.Mutex
			var total int64
			for i := range clients {
				connected.Add(1)
				wg.Go(func() {
					c, err := dialE(srv.Addr())
					connected.Done()
					if err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
					defer c.Close()
					<-begin
					n, err := echoOnce(c, seed, uint64(i))
					if err != nil {
						t.Errorf("client %d (seed %d): %v", i, seed, err)
					}
					mu.Lock()
					total += n
					mu.Unlock()
				})
			}
			connected.Wait()
			waitStats(t, srv, "every client accepted", func(st Stats) bool { return st.Open == clients })
			start := time.Now()
			close(begin)
			wg.Wait()
			t.Logf("%d clients at once echoed %.1f MiB over %s in %v", clients, float64(total)/(1<<20), r.name, time.Since(start).Round(time.Millisecond))
			// Every connection was accepted once and closed once, and none is left open.
			st := waitStats(t, srv, "every connection closed", func(st Stats) bool { return st.Closed == clients })
			if st.Accepted != clients || st.Open != 0 || st.Shed != 0 || st.Refused != 0 || st.Resets != 0 {
				t.Errorf("stats after %d clients: %s", clients, st)
			}
		})
	}
}

// echoOnce is client i of TestEchoRandomChunks, on its connection c. Client 0 sends nothing
// and client 1 exactly 1 MiB, so both ends of the range are always covered. The payload is made as it is sent,
// from a ChaCha8 stream of the seed, and hashed on both sides as it goes: 250 clients hold
// a chunk each, not a megabyte.
func echoOnce(c *net.TCPConn, seed, i uint64) (int64, error) {
	// Two generators: rand.Rand is not safe for the writer and the reader at once.
	wrng, rrng := rand.New(rand.NewPCG(seed, i)), rand.New(rand.NewPCG(seed, i|1<<63))
	size := wrng.IntN(1<<20 + 1)
	switch i {
	case 0:
		size = 0
	case 1:
		size = 1 << 20
	}
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		src := rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "%d/%d", seed, i)))
		buf := make([]byte, 256<<10)
		for left := size; left > 0; {
			// Tiny writes, a segment's worth, and big ones: the server must not care how
			// the stream was cut, nor when the pieces come.
			var n int
			switch wrng.IntN(3) {
			case 0:
				n = 1 + wrng.IntN(16)
			case 1:
				n = 1 + wrng.IntN(1500)
			default:
				n = 1 + wrng.IntN(len(buf))
			}
			n = min(n, left)
			src.Read(buf[:n])
			sent.Write(buf[:n])
			if _, err := c.Write(buf[:n]); err != nil {
				werr <- fmt.Errorf("write: %w", err)
				return
			}
			left -= n
			if wrng.IntN(4) == 0 {
				time.Sleep(time.Duration(wrng.IntN(5000)) * time.Microsecond)
			}
		}
		werr <- c.CloseWrite() // shutdown(SHUT_WR): our FIN after the last byte
	}()
	// The reader takes the echo in pieces of its own, and now and then stops for a while:
	// the server's output backs up, and it must stop reading and resume without a loss.
	got := sha256.New()
	buf := make([]byte, 64<<10)
	var n int64
	var rerr error
	for {
		m := 1 + rrng.IntN(len(buf))
		if rrng.IntN(8) == 0 {
			m = 1 + rrng.IntN(16)
		}
		k, err := c.Read(buf[:m])
		got.Write(buf[:k])
		n += int64(k)
		if err != nil {
			if err != io.EOF { // nil at end of stream; ECONNRESET or a timeout otherwise
				rerr = err
			}
			break
		}
		if rrng.IntN(16) == 0 {
			time.Sleep(time.Duration(rrng.IntN(5000)) * time.Microsecond)
		}
	}
	if err := <-werr; err != nil {
		return n, err
	}
	if rerr != nil {
		return n, fmt.Errorf("read after %d of %d bytes: %w", n, size, rerr)
	}
	if n != int64(size) || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		return n, fmt.Errorf("echoed %d bytes, sha256 %x; sent %d, sha256 %x", n, got.Sum(nil)[:8], size, sent.Sum(nil)[:8])
	}
	// The end of stream is for good: another read says EOF again, not an error.
	if m, err := c.Read(make([]byte, 1)); m != 0 || err != io.EOF {
		return n, fmt.Errorf("read after EOF = %d, %v; want 0, EOF", m, err)
	}
	return n, nil
}

// TestTupleLine: the first line of the tuple handler names this very connection. Parsed, it
// must equal what the kernel tells the client of its own end: getsockname (the client's
// address and port) and getpeername (the server's). Two clients differ only in their port.
func TestTupleLine(t *testing.T) {
	for _, f := range testkit.Families {
		t.Run(f.Name, func(t *testing.T) {
			f.Require(t)
			noLeaks(t)
			srv := startServer(t, Config{Addr: f.Any()}) // nil Handler: TupleHandler
			var seen []sock.Tuple
			for i := range 3 {
				c := dial(t, srv.Addr())
				r := bufio.NewReader(c)
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("client %d: the tuple line: %q, %v", i, line, err)
				}
				got, err := parseTupleLine(line)
				if err != nil {
					t.Fatal(err)
				}
				own, err := clientTuple(c)
				if err != nil {
					t.Fatalf("the client's own tuple: %v", err)
				}
				if got != own {
					t.Errorf("the server says %q\nthe client's kernel says %s", line, own)
				}
				// The same, through what net.Conn asked the kernel at connect.
				if ap := c.LocalAddr().(*net.TCPAddr).AddrPort(); got.Local != ap {
					t.Errorf("line names the client %s; net.Conn LocalAddr %s", got.Local, ap)
				}
				if got.Remote != srv.Addr() {
					t.Errorf("line names the server %s; it listens on %s", got.Remote, srv.Addr())
				}
				for _, o := range seen {
					if o.Local.Port() == got.Local.Port() || o.Local.Addr() != got.Local.Addr() || o.Remote != got.Remote {
						t.Errorf("two connections, %s and %s: want them to differ in the client's port only", o, got)
					}
				}
				seen = append(seen, got)
				// After the greeting, the tuple handler echoes.
				msg := fmt.Sprintf("hello from %s\n", got.Local)
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				if echo, err := r.ReadString('\n'); echo != msg || err != nil {
					t.Errorf("echo after the tuple line: %q, %v; want %q", echo, err, msg)
				}
			}
		})
	}
}

// parseTupleLine reads "tcp CLIENT -> SERVER  (comment...)" as the client's Tuple.
func parseTupleLine(line string) (sock.Tuple, error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[2] != "->" || !strings.HasPrefix(f[4], "(") {
		return sock.Tuple{}, fmt.Errorf("tuple line %q: want \"tcp CLIENT -> SERVER  (...)\"", line)
	}
	local, err1 := netip.ParseAddrPort(f[1])
	remote, err2 := netip.ParseAddrPort(f[3])
	if err1 != nil || err2 != nil {
		return sock.Tuple{}, fmt.Errorf("tuple line %q: %v %v", line, err1, err2)
	}
	return sock.Tuple{Proto: f[0], Local: local, Remote: remote}, nil
}
