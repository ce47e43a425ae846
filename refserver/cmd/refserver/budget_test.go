//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/netns"
	"portproof/internal/procfs"
	"portproof/internal/testkit"
)

// TestStalledReadersBudget: a crowd of clients that send and never read. Each connection's
// queue is bounded (-max-output), but the crowd's total is bounded only by -max-queued: past
// it the loops stop reading, so the server's memory stops growing with the crowd. The
// server runs as its own process, so that its resident memory (VmRSS) is its own; the same
// crowd against a budget too large to matter shows what the budget saves.
//
// The kernel's own socket buffers would take most of what a crowd sends (autotuned up to
// net.ipv4.tcp_rmem and tcp_wmem's 32 and 4 MiB), and the test would need gigabytes to
// reach the server's queues. So it runs in a network namespace of its own, where those two
// are shrunk to 64 KiB: the server's queues fill with a few hundred MiB in flight.
func TestStalledReadersBudget(t *testing.T) {
	if os.Getenv(budgetInside) == "" {
		runInNamespace(t, "^TestStalledReadersBudget$")
		return
	}
	if err := netns.Setup(map[string]string{
		"net.ipv4.tcp_rmem": "4096 16384 65536",
		"net.ipv4.tcp_wmem": "4096 16384 65536",
	}); err != nil {
		t.Fatal(err)
	}
	const clients, each = 2000, 512 << 10
	const budget = 8 << 20
	var grew, queued [2]int64
	for i, maxQueued := range []int64{budget, 1 << 30} {
		c := startCLI(t, "-addr", "127.0.0.1:0", "-mode", "echo", "-quiet",
			"-max-queued", strconv.FormatInt(maxQueued, 10), "-idle-timeout", "0")
		echoOnce(t, c) // the loops' buffers are made and used: the baseline is a served server
		before := vmRSS(t, c.cmd.Process.Pid)
		conns := stall(t, c, clients, each)
		after := vmRSS(t, c.cmd.Process.Pid)
		grew[i] = after - before
		stats := statsLine(t, c)
		queued[i] = queuedBytes(t, stats)
		t.Logf("-max-queued %d MiB: %d clients sent up to %d KiB each and read nothing; the "+
			"server's VmRSS went from %d to %d MiB (+%d KiB, %d bytes a client); %s",
			maxQueued>>20, clients, each>>10, before>>20, after>>20, grew[i]>>10,
			grew[i]/clients, stats)
		if maxQueued == budget {
			if !strings.Contains(stats, "reading paused") {
				t.Errorf("the crowd holds more than the budget, and reading is not paused: %s", stats)
			}
			// The budget, and the Go heap's own slack over it: GOGC=100 lets a heap reach
			// twice what is live before it collects, and a loop's read buffer is 64 KiB.
			if limit := int64(raceFactor * (3*budget + 8<<20)); grew[i] > limit {
				t.Errorf("VmRSS grew %d KiB with -max-queued %d KiB: more than %d KiB",
					grew[i]>>10, budget>>10, limit>>10)
			}
		}
		for _, conn := range conns {
			conn.Close()
		}
		// The crowd gone, its queues go with it, reading resumes, and a newcomer is served.
		if err := pollStats(c, func(s string) bool { return strings.Contains(s, "open 0 ") }); err != nil {
			t.Fatal(err)
		}
		echoOnce(t, c)
	}
	// What the budget kept out of the queues is heap the server never took; the heap's slack
	// (and under -race its shadow) only adds to what it saves. Without the budget the crowd
	// must queue more than it, or the two runs do not differ in what is measured.
	kept := queued[1] - queued[0]
	t.Logf("the budget kept %d KiB out of the queues and saved %d KiB of the server's memory",
		kept>>10, (grew[1]-grew[0])>>10)
	if queued[1] <= budget {
		t.Errorf("without the budget the crowd queued %d KiB, no more than the %d KiB budget",
			queued[1]>>10, budget>>10)
	}
	if grew[1]-grew[0] < kept {
		t.Errorf("with the budget VmRSS grew %d KiB, without it %d KiB: it saved less than the "+
			"%d KiB it kept out of the queues", grew[0]>>10, grew[1]>>10, kept>>10)
	}
}

// queuedBytes is the "output queued N KiB" of a stats line: every connection's queued
// output, as the server counts it.
func queuedBytes(t *testing.T, stats string) int64 {
	t.Helper()
	_, rest, ok := strings.Cut(stats, "output queued ")
	kib, _, _ := strings.Cut(rest, " KiB")
	n, err := strconv.ParseInt(kib, 10, 64)
	if !ok || err != nil {
		t.Fatalf("no \"output queued N KiB\" in the stats line: %s", stats)
	}
	return n << 10
}

const budgetInside = "REFSERVER_TEST_IN_NETNS"

// runInNamespace runs the test binary's test named by run again, in a network namespace of
// its own (root: CLONE_NEWNET; otherwise a user namespace that owns one), and fails if it
// fails. Its output is this test's log.
func runInNamespace(t *testing.T, run string) {
	t.Helper()
	runtime.LockOSThread() // the child's Pdeathsig is this thread's (netns.Kind.Command)
	defer runtime.UnlockOSThread()
	var out bytes.Buffer
	var cmd *exec.Cmd
	_, err := netns.First(func(k netns.Kind) error {
		out.Reset()
		cmd = k.Command(context.Background(), "-test.run="+run, "-test.v", "-test.count=1")
		cmd.Env = testkit.ChildEnv(budgetInside + "=1")
		cmd.Stdout, cmd.Stderr = &out, &out
		return cmd.Run()
	})
	if errors.Is(err, netns.ErrRefused) {
		testkit.Require(t, false, "no network namespace for the test: "+err.Error())
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(line, ".go:") {
			t.Log(strings.TrimSpace(line))
		}
	}
	if err != nil {
		t.Fatalf("in its namespace: %v\n%s", err, out.String())
	}
}

// stall connects n clients that each write up to each bytes, for at most 3 s, and read
// nothing; it returns when every write has stopped, their connections still open.
func stall(t *testing.T, c *cli, n, each int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	payload := make([]byte, each)
	// A small receive buffer, set before connect so that the window it offers is small
	// from the SYN on: what the server sends it fills the kernel's buffers sooner, and the
	// rest waits in the server's own queues, which is what the test is about.
	dialer := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<10) })
		return serr
	}}
	for i := range conns {
		conn, err := dialer.Dial("tcp", c.addr.String())
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns[i] = conn
		t.Cleanup(func() { conn.Close() })
		wg.Go(func() {
			conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Write(payload); err != nil && !os.IsTimeout(err) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // what the server had read is answered or queued
	return conns
}

// echoOnce checks that a fresh client is served.
func echoOnce(t *testing.T, c *cli) {
	t.Helper()
	conn := c.dial(t)
	defer conn.Close()
	fmt.Fprintln(conn, "ping")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("a fresh client: %q, %v; want its echo", line, err)
	}
}

// statsLine asks the server for its stats line (SIGUSR1).
func statsLine(t *testing.T, c *cli) string {
	t.Helper()
	n := len(c.out.All())
	c.signal(t, unix.SIGUSR1)
	for range 500 {
		if lines := c.out.All(); len(lines) > n {
			for _, l := range lines[n:] {
				if s, ok := strings.CutPrefix(l, "stats: "); ok {
					return s
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no stats line 5 s after SIGUSR1")
	return ""
}

// pollStats asks for the stats line until ok holds, at most 10 s.
func pollStats(c *cli, ok func(string) bool) error {
	var last string
	for range 100 {
		n := len(c.out.All())
		c.cmd.Process.Signal(unix.SIGUSR1)
		time.Sleep(100 * time.Millisecond)
		for _, l := range c.out.All()[n:] {
			if s, found := strings.CutPrefix(l, "stats: "); found {
				if last = s; ok(s) {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("stats not so after 10 s: %s", last)
}

// vmRSS is a process's resident memory in bytes, VmRSS in /proc/PID/status.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := procfs.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
