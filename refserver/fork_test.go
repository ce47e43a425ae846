//go:build linux

package refserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"portproof/internal/testkit"
)

// The API a protocol other than echo needs, tested with a line protocol: input kept across
// reads, output gathered per callback and paused at a mark, Execute, per-loop state, and the
// limits that cut a connection counted and logged.

// lineHandler answers each line: "G n" with n bytes, anything else with itself. It consumes
// whole lines only, and stops parsing while more than mark bytes wait for the peer.
type lineHandler struct {
	mark     int
	received atomic.Int64 // bytes OnData has been handed for the first time
	maxQueue atomic.Int64 // the most Queued said at a mark check
}

func (*lineHandler) OnOpen(*Conn)         {}
func (*lineHandler) OnClose(*Conn, error) {}

func (h *lineHandler) OnData(c *Conn, in []byte) int {
	if seen, _ := c.Context.(int); len(in) > seen {
		h.received.Add(int64(len(in) - seen))
	}
	used := 0
	for {
		if q := int64(c.Queued()); q > h.maxQueue.Load() {
			h.maxQueue.Store(q)
		}
		if h.mark > 0 && c.Queued() > h.mark {
			break // the loop hands the rest back once the peer has caught up
		}
		i := bytes.IndexByte(in[used:], '\n')
		if i < 0 {
			break // a line not yet whole: it stays, and more is read behind it
		}
		line := in[used : used+i]
		used += i + 1
		if n, ok := strings.CutPrefix(string(line), "G "); ok {
			size, _ := strconv.Atoi(n)
			c.Write(pattern(size))
			continue
		}
		c.Write(append(line, '\n'))
	}
	c.Context = len(in) - used // what is kept: seen already when it comes again
	return used
}

// pattern is n bytes a reader can check for order: the low byte of each offset.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// TestMessagesSplitAtEveryByte: a message cut anywhere is answered once, whole. For each
// cut k the client sends the first k bytes, waits until the Handler has been handed them,
// and only then sends the rest, so the cut is a read boundary on the server.
func TestMessagesSplitAtEveryByte(t *testing.T) {
	noLeaks(t)
	h := &lineHandler{}
	srv := startServer(t, Config{Handler: h, Loops: 1})
	msg := []byte("hello\nsecond line\n")
	for k := range len(msg) + 1 {
		c := dial(t, srv.Addr())
		before := h.received.Load()
		if _, err := c.Write(msg[:k]); err != nil {
			t.Fatal(err)
		}
		if err := poll(5*time.Second, func() (bool, error) { return h.received.Load() == before+int64(k), nil }); err != nil {
			t.Fatalf("cut at %d: the Handler was not handed the first part: %v", k, err)
		}
		if _, err := c.Write(msg[k:]); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("cut at %d: got %q, %v; want %q", k, got, err, msg)
		}
		c.Close()
	}
	t.Logf("%d cuts of a %d-byte message of two lines, each answered whole", len(msg)+1, len(msg))
}

// TestManyMessagesInOneRead: a thousand lines in one write are answered in order, and the
// answers gathered: far fewer write(2) calls than lines (the process's syscw, /proc/self/io).
func TestManyMessagesInOneRead(t *testing.T) {
	noLeaks(t)
	srv := startServer(t, Config{Handler: &lineHandler{}, Loops: 1})
	c := dial(t, srv.Addr())
	var req bytes.Buffer
	const lines = 1000
	for i := range lines {
		fmt.Fprintf(&req, "line %d\n", i)
	}
	writesBefore := writeCalls(t)
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, req.Len())
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, req.Bytes()) {
		t.Fatalf("got %d bytes (%v), not the %d lines in order", len(got), err, lines)
	}
	writes := writeCalls(t) - writesBefore
	// The client's write is one; the server's answers, gathered per callback, a few more
	// (one read may not hold all 13 KiB). Without the gathering, one write(2) per line.
	if writes > 10 {
		t.Errorf("%d write(2) calls in the process for %d lines answered: the answers were not gathered", writes, lines)
	}
	t.Logf("%d lines in one write, answered in order with %d write(2) calls in the process", lines, writes)
}

// writeCalls is the process's count of write system calls, syscw in /proc/self/io.
func writeCalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("/proc/self/io has no syscw")
	return 0
}

// TestPipelinedLargeRepliesToSlowReader: many pipelined requests for 1 MiB each, one read's
// worth on the server, reach a client that reads slowly, all of them: the Handler stops at
// its mark, the loop stops reading, and hands the rest back as the client catches up.
// Nothing is cut, though the replies are far more than MaxOutput.
func TestPipelinedLargeRepliesToSlowReader(t *testing.T) {
	noLeaks(t)
	for _, n := range []int{16, 100} {
		t.Run(fmt.Sprintf("%d", n), func(t *testing.T) {
			const size, mark = 1 << 20, 256 << 10
			h := &lineHandler{mark: mark}
			srv := startServer(t, Config{Handler: h, Loops: 1, MaxOutput: 4 << 20})
			c := dial(t, srv.Addr())
			c.SetReadBuffer(64 << 10)
			if _, err := c.Write(bytes.Repeat([]byte(fmt.Sprintf("G %d\n", size)), n)); err != nil {
				t.Fatal(err)
			}
			// A slow reader: 128 KiB at a time, a pause after each, while the server's queue
			// fills and its loop stops reading.
			want, buf := pattern(size), make([]byte, size)
			start := time.Now()
			for i := range n {
				for got := 0; got < size; {
					m, err := io.ReadFull(c, buf[got:min(got+128<<10, size)])
					if err != nil {
						t.Fatalf("reply %d of %d, after %d bytes: %v", i+1, n, got, err)
					}
					got += m
					time.Sleep(time.Millisecond)
				}
				if !bytes.Equal(buf, want) {
					t.Fatalf("reply %d of %d: not the pattern", i+1, n)
				}
			}
			st := srv.Stats()
			if st.OutputCut != 0 || st.InputCut != 0 {
				t.Errorf("stats: %s: nothing may be cut for a client that reads", st)
			}
			// One reply past the mark at most: the check comes before each request.
			if q := h.maxQueue.Load(); q > mark+size {
				t.Errorf("Queued reached %d, past the mark %d and one reply", q, mark)
			}
			t.Logf("%d pipelined replies of 1 MiB read slowly (%v), all %d MiB delivered in "+
				"order; the most queued for the client at a mark check: %d KiB (mark %d KiB)",
				n, time.Since(start).Round(time.Millisecond), n, h.maxQueue.Load()>>10, mark>>10)
		})
	}
}

// floodHandler answers a byte with 16 MiB at once, ignoring Queued: the output limit cuts
// the connection, and the cut is counted and logged.
type floodHandler struct{ Echo }

func (floodHandler) OnData(c *Conn, in []byte) int {
	c.Write(make([]byte, 16<<20))
	return len(in)
}

func TestOutputLimitCutIsCountedAndLogged(t *testing.T) {
	noLeaks(t)
	var logged testkit.Lines
	srv := startServer(t, Config{Handler: floodHandler{}, Loops: 1, MaxOutput: 4 << 20,
		Log: log.New(&logged, "", 0)})
	c := dial(t, srv.Addr())
	c.SetReadBuffer(64 << 10)
	c.Write([]byte("x"))
	// The client reads nothing until the server has met its limit: the kernel's buffers take
	// a few MiB of the 16, MaxOutput 4 more, and the rest is past the limit.
	st := waitStats(t, srv, "the cut counted", func(st Stats) bool { return st.OutputCut == 1 })
	got, err := readEOF(c)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !isConnReset(err) {
		t.Fatalf("after %d bytes: %v", got, err)
	}
	if got >= 16<<20 {
		t.Fatalf("got all %d bytes: nothing was cut", got)
	}
	if !strings.Contains(st.String(), "cut 1") {
		t.Errorf("stats line %q does not show the cut", st)
	}
	line, err := logged.Wait("cut 127.0.0.1:", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a Handler that wrote 16 MiB at once to a client reading nothing: cut after the "+
		"client had %d KiB; log: %q; stats: %s", got>>10, line, st)
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "connection reset")
}

// TestInputLimitCutIsCountedAndLogged: a line longer than MaxInput can never be handed over
// whole: the connection is closed, counted and logged.
func TestInputLimitCutIsCountedAndLogged(t *testing.T) {
	noLeaks(t)
	var logged testkit.Lines
	srv := startServer(t, Config{Handler: &lineHandler{}, Loops: 1, MaxInput: 4 << 10,
		Log: log.New(&logged, "", 0)})
	c := dial(t, srv.Addr())
	if _, err := c.Write(bytes.Repeat([]byte("x"), 16<<10)); err != nil {
		t.Fatal(err)
	}
	if n, err := readEOF(c); err != nil && !isConnReset(err) {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	st := waitStats(t, srv, "the cut counted", func(st Stats) bool { return st.InputCut == 1 })
	line, err := logged.Wait("a message longer than 4096 bytes", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a 16 KiB line against MaxInput 4 KiB: closed; log: %q; stats: %s", line, st)
}

// laterHandler answers each read from another goroutine, through Execute, after a pause in
// which the loop has gone back to sleep in epoll_wait with nothing due (no idle timeout).
type laterHandler struct{ Echo }

func (laterHandler) OnData(c *Conn, in []byte) int {
	msg := append([]byte("later: "), in...)
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.Execute(func(c *Conn) { c.Write(msg) })
	}()
	return len(in)
}

func TestExecuteWakesAnIdleLoop(t *testing.T) {
	noLeaks(t)
	srv := startServer(t, Config{Handler: laterHandler{}, Loops: 1, IdleTimeout: -1})
	c := dial(t, srv.Addr())
	start := time.Now()
	c.Write([]byte("ping\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "later: ping\n" {
		t.Fatalf("got %q, %v; want the answer written through Execute", line, err)
	}
	took := time.Since(start)
	// The loop slept in epoll_wait(-1): only the eventfd Execute writes could wake it.
	t.Logf("an answer written by Execute from another goroutine 50 ms later reached the "+
		"client %v after its request", took.Round(time.Millisecond))

	var ran atomic.Bool
	conn := make(chan *Conn, 1)
	srv2 := startServer(t, Config{Handler: captureHandler{conn}, Loops: 1, IdleTimeout: -1})
	c2 := dial(t, srv2.Addr())
	captured := <-conn
	c2.Close()
	waitStats(t, srv2, "the close", func(st Stats) bool { return st.Closed == 1 })
	if err := captured.Execute(func(*Conn) { ran.Store(true) }); err != nil {
		t.Fatalf("Execute on a closed connection of a running server: %v, want nil", err)
	}
	time.Sleep(50 * time.Millisecond)
	if ran.Load() {
		t.Error("Execute ran a function on a connection that had closed")
	}
}

// captureHandler hands each new Conn to the test.
type captureHandler struct{ conns chan<- *Conn }

func (h captureHandler) OnOpen(c *Conn)              { h.conns <- c }
func (captureHandler) OnData(c *Conn, in []byte) int { return len(in) }
func (captureHandler) OnClose(*Conn, error)          {}

// loopStateHandler keeps a value per loop and says which one each connection saw.
type loopStateHandler struct {
	mu    sync.Mutex
	made  []int
	calls atomic.Int32
}

func (h *loopStateHandler) NewLoopState(loop int) any {
	h.calls.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.made = append(h.made, loop)
	return &loopCounter{loop: loop}
}

type loopCounter struct {
	loop  int
	conns int // touched by that loop's callbacks only: no lock
}

func (h *loopStateHandler) OnOpen(c *Conn) {
	st := c.LoopState().(*loopCounter)
	st.conns++
	fmt.Fprintf(c, "loop %d, connection %d of it\n", st.loop, st.conns)
}
func (*loopStateHandler) OnData(c *Conn, in []byte) int { return len(in) }
func (*loopStateHandler) OnClose(*Conn, error)          {}

func TestLoopState(t *testing.T) {
	noLeaks(t)
	h := &loopStateHandler{}
	const loops = 3
	srv := startServer(t, Config{Handler: h, Loops: loops, ReusePort: true})
	if n := h.calls.Load(); n != loops {
		t.Fatalf("NewLoopState called %d times for %d loops", n, loops)
	}
	seen := map[string]bool{}
	for range 30 {
		c := dial(t, srv.Addr())
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if seen[line] {
			t.Fatalf("%q twice: a loop's state was not its own", line)
		}
		seen[line] = true
	}
	t.Logf("%d loops, a state each; 30 connections numbered per loop without a lock", loops)
}
