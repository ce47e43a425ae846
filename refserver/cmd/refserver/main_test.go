//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/testkit"
	"portproof/refserver/sock"
)

// The CLI's tests run the test binary itself as refserver: with REFSERVER_AS_CLI=1, TestMain
// does what main does, so no `go build` is needed and the code under test is this build's.
const asCLI = "REFSERVER_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		sig := make(chan os.Signal, 4)
		signal.Notify(sig, unix.SIGINT, unix.SIGTERM, unix.SIGUSR1)
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sig))
	}
	os.Exit(m.Run())
}

// connDeadline bounds every client connection of the tests.
const connDeadline = 10 * time.Second

// cli is a running refserver.
type cli struct {
	cmd    *exec.Cmd
	out    *testkit.Lines
	stderr *testkit.Lines
	exit   chan struct{} // closed when it has exited; err says how
	err    error
	addr   netip.AddrPort // from its "listening on" line
}

func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	// Under -race, a process that exits 0 sleeps a second first, which the exit timings
	// would measure: testkit.ChildEnv turns it off.
	cmd.Env = testkit.ChildEnv(asCLI + "=1")
	return cmd
}

// startCLI runs refserver with args and waits for its "listening on" line.
func startCLI(t *testing.T, args ...string) *cli {
	t.Helper()
	c := &cli{cmd: command(args...), out: testkit.NewLines(), stderr: testkit.NewLines(), exit: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.exit) }()
	t.Cleanup(func() {
		select {
		case <-c.exit:
		default:
			c.cmd.Process.Kill()
			<-c.exit
		}
	})
	line, err := c.out.Wait("listening on ", 30*time.Second)
	if err != nil {
		t.Fatalf("refserver %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, c.out, c.stderr)
	}
	m := regexp.MustCompile(`^listening on (\S+); try: nc (\S+) (\d+) `).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%q: want \"listening on ADDR; try: nc HOST PORT ...\"", line)
	}
	if c.addr, err = netip.ParseAddrPort(m[1]); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	// The nc hint names the same address, as nc wants it.
	if m[2] != c.addr.Addr().String() || m[3] != strconv.Itoa(int(c.addr.Port())) {
		t.Errorf("%q: the nc hint does not name %s", line, c.addr)
	}
	return c
}

// signal sends s and returns when.
func (c *cli) signal(t *testing.T, s unix.Signal) time.Time {
	t.Helper()
	if err := c.cmd.Process.Signal(s); err != nil {
		t.Fatalf("kill -%s: %v", unix.SignalName(s), err)
	}
	return time.Now()
}

// dial connects a client to the server, with connDeadline on the connection (testkit.Dial),
// and fails the test if it cannot.
func (c *cli) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	conn, err := testkit.Dial(c.addr, connDeadline)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// wait waits at most d for the process to exit and returns its exit code.
func (c *cli) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-c.exit:
	case <-time.After(d):
		t.Fatalf("refserver still running after %v\nstdout:\n%s", d, c.out)
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	if c.err != nil {
		t.Fatal(c.err)
	}
	return 0
}

// runCLI runs refserver with args to its end, at most 30s.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := command(args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("refserver %s: still running after 30s\nstdout:\n%s", strings.Join(args, " "), o.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// acceptQueueMax is what the kernel makes of listen(fd, backlog): min(backlog,
// net.core.somaxconn).
func acceptQueueMax(t *testing.T, backlog int) int {
	t.Helper()
	s, err := sock.Sysctl("net.core.somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	somax, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return min(backlog, somax)
}

// TestNarration: refserver prints its system calls as strace would, the kernel's answers
// included; greets a client with its 5-tuple; prints a stats line on SIGUSR1; and on SIGTERM
// or SIGINT lets the client finish and exits 0, within the shutdown timeout.
func TestNarration(t *testing.T) {
	for _, f := range testkit.Families {
		for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGINT} {
			t.Run(f.Name+"/"+unix.SignalName(sig), func(t *testing.T) {
				f.Require(t)
				t.Parallel()
				const shutdownTimeout = 3 * time.Second
				c := startCLI(t, "-addr", f.Any().String(), "-shutdown-timeout", shutdownTimeout.String())
				if c.addr.Addr() != f.Loopback || c.addr.Port() == 0 {
					t.Errorf("listening on %s; want %s and the port the kernel chose", c.addr, f.Loopback)
				}
				checkStartup(t, c, f)

				client := c.dial(t)
				defer client.Close()
				r := bufio.NewReader(client)
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("the tuple line: %q, %v", line, err)
				}
				me := client.LocalAddr().(*net.TCPAddr).AddrPort()
				if want := fmt.Sprintf("tcp %s -> %s  (", me, c.addr); !strings.HasPrefix(line, want) {
					t.Errorf("tuple line %q; want it to start %q", line, want)
				}
				// The server's side of the same connection, in its log: accept4's new descriptor.
				acc, err := c.out.Wait(" -> "+me.String(), 5*time.Second)
				if err != nil {
					t.Error(err)
				} else if !regexp.MustCompile(`^accept4 = \d+: tcp ` + regexp.QuoteMeta(c.addr.String()) + ` -> `).MatchString(acc) {
					t.Errorf("accept line %q", acc)
				}
				if _, err := client.Write([]byte("ping\n")); err != nil {
					t.Fatal(err)
				}
				if echo, err := r.ReadString('\n'); echo != "ping\n" || err != nil {
					t.Errorf("echo: %q, %v", echo, err)
				}

				c.signal(t, unix.SIGUSR1)
				stats, err := c.out.Wait("stats: open ", 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("stats: open 1 (accepted 1, closed 0, shed 0, refused 0, reset 0, cut 0); descriptors %%d/%%d; accept queue 0/%d; output queued 0 KiB", acceptQueueMax(t, unix.SOMAXCONN))
				var fds, limit int
				if _, err := fmt.Sscanf(stats, want, &fds, &limit); err != nil {
					t.Errorf("%q: want %q: %v", stats, want, err)
				}

				sent := c.signal(t, sig)
				// The client is told: end of stream after what it was owed.
				if n, err := io.Copy(io.Discard, r); n != 0 || err != nil {
					t.Errorf("client after %s: %d bytes, %v; want end of stream", unix.SignalName(sig), n, err)
				}
				client.Close()
				if code := c.wait(t, shutdownTimeout+2*time.Second); code != 0 {
					t.Errorf("exit code %d after %s; want 0\nstderr: %s", code, unix.SignalName(sig), c.stderr)
				}
				took := time.Since(sent)
				t.Logf("exited 0 %v after %s", took.Round(time.Millisecond), unix.SignalName(sig))
				if took > shutdownTimeout {
					t.Errorf("exited %v after %s; want within -shutdown-timeout %v", took, unix.SignalName(sig), shutdownTimeout)
				}
				if _, err := c.out.Wait(unix.SignalName(sig)+": no more connections; letting 1 open ones finish", 0); err != nil {
					t.Error(err)
				}
				if _, err := c.out.Wait("stopped: open 0 (accepted 1, closed 1,", 0); err != nil {
					t.Error(err)
				}
				if line, err := c.out.Wait("shutdown: ", 0); err == nil {
					t.Errorf("a drained shutdown says %q", line)
				}
				if s := c.stderr.String(); s != "" {
					t.Errorf("stderr: %q", s)
				}
			})
		}
	}
}

// checkStartup reads the narration of New: socket, setsockopt, bind, listen with the
// kernel's answers, in that order, on one descriptor.
func checkStartup(t *testing.T, c *cli, f testkit.Family) {
	t.Helper()
	all := c.out.All()
	var pos []int
	find := func(re string) []string {
		t.Helper()
		rx := regexp.MustCompile(re)
		for i, l := range all {
			if m := rx.FindStringSubmatch(l); m != nil {
				pos = append(pos, i)
				return m
			}
		}
		t.Errorf("no line matches %s in\n%s", re, strings.Join(all, "\n"))
		pos = append(pos, -1)
		return nil
	}
	if m := find(`^refserver: pid (\d+), mode tuple$`); m != nil && m[1] != strconv.Itoa(c.cmd.Process.Pid) {
		t.Errorf("pid %s; it is %d", m[1], c.cmd.Process.Pid)
	}
	m := find(`^socket\(` + f.DomainName() + `, SOCK_STREAM\|SOCK_NONBLOCK\|SOCK_CLOEXEC, IPPROTO_TCP\) = (\d+)$`)
	if m == nil {
		return
	}
	fd := m[1]
	find(`^setsockopt\(` + fd + `, SOL_SOCKET, SO_REUSEADDR, 1\) = 0$`)
	find(`^bind\(` + fd + `, ` + regexp.QuoteMeta(f.Any().String()) + `\) = 0$`)
	find(`^listen\(` + fd + `, ` + strconv.Itoa(unix.SOMAXCONN) + `\) = 0$`)
	limit := acceptQueueMax(t, unix.SOMAXCONN)
	find(fmt.Sprintf(`^  the accept queue's limit is %d \(TCP_INFO tcpi_sacked; it holds %d, `,
		limit, limit+1))
	find(`^listening on `)
	for i := 1; i < len(pos); i++ {
		if pos[i] < pos[i-1] {
			t.Errorf("the narration is out of order:\n%s", strings.Join(all, "\n"))
			break
		}
	}
}

// TestShutdownCut: a client that never sends its FIN holds the drain until the shutdown
// timeout, or until a second signal; refserver then says it closed what was left, and still
// exits 0.
func TestShutdownCut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		second  bool
		want    string
	}{
		{"timeout", 500 * time.Millisecond, false, "shutdown: context deadline exceeded; the connections left were closed"},
		{"second signal", 10 * time.Second, true, "shutdown: context canceled; the connections left were closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startCLI(t, "-addr", "127.0.0.1:0", "-mode", "echo", "-shutdown-timeout", tc.timeout.String())
			client := c.dial(t)
			defer client.Close()
			if _, err := c.out.Wait("accept4 = ", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			sent := c.signal(t, unix.SIGTERM)
			if _, err := c.out.Wait("SIGTERM: no more connections", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if tc.second {
				c.signal(t, unix.SIGINT)
			}
			if code := c.wait(t, 5*time.Second); code != 0 {
				t.Errorf("exit code %d; want 0", code)
			}
			took := time.Since(sent)
			t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))
			if took > tc.timeout+time.Second || (!tc.second && took < tc.timeout) {
				t.Errorf("exited %v after SIGTERM; want about %v", took, min(tc.timeout, time.Second))
			}
			if _, err := c.out.Wait(tc.want, 0); err != nil {
				t.Errorf("%v\nstdout:\n%s", err, c.out)
			}
		})
	}
}

// TestBadInput: a bad flag or argument is one line on stderr that names it, nothing on
// stdout, exit 2; a port in use is one line naming EADDRINUSE, exit 1; -h is usage, exit 0.
func TestBadInput(t *testing.T) {
	_, hard, err := sock.DescriptorLimit()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		name string // what the line must name
	}{
		{[]string{"-addr", "foo"}, `-addr "foo"`},
		{[]string{"-addr", "localhost:7000"}, `-addr "localhost:7000"`},
		{[]string{"-mode", "bogus"}, `-mode "bogus"`},
		{[]string{"-backlog", "-1"}, "-backlog -1"},
		{[]string{"-backlog", "many"}, "-backlog"},
		{[]string{"-loops", "-2"}, "-loops -2"},
		{[]string{"-max-conns", "-1"}, "-max-conns -1"},
		{[]string{"-max-conns-per-ip", "-3"}, "-max-conns-per-ip -3"},
		{[]string{"-idle-timeout", "-1s"}, "-idle-timeout -1s"},
		{[]string{"-shutdown-timeout", "0s"}, "-shutdown-timeout 0s"},
		{[]string{"-nofile", strconv.FormatUint(hard+1, 10)}, "-nofile"},
		{[]string{"-bogus"}, "-bogus"},
		{[]string{"-addr", "127.0.0.1:0", "stray"}, `"stray"`},
		{[]string{"-addr", "127.0.0.1:0", "-v6only"}, "-v6only"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d; want %d", code, exitUsage)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !strings.Contains(stderr, tc.name) {
				t.Errorf("stderr %q; want one line naming %s", stderr, tc.name)
			}
			if stdout != "" {
				t.Errorf("stdout %q; want nothing", stdout)
			}
		})
	}

	for _, f := range testkit.Families {
		t.Run("port in use/"+f.Name, func(t *testing.T) {
			f.Require(t)
			ln, err := net.Listen("tcp", f.Any().String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			taken := ln.Addr().(*net.TCPAddr).AddrPort()
			stdout, stderr, code := runCLI(t, "-addr", taken.String())
			if code != exitFailure {
				t.Errorf("exit code %d; want %d", code, exitFailure)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "EADDRINUSE") || !strings.Contains(stderr, taken.String()) {
				t.Errorf("stderr %q; want one line naming %s and EADDRINUSE", stderr, taken)
			}
			// The narration shows the kernel's answer to bind.
			if !regexp.MustCompile(`(?m)^bind\(\d+, ` + regexp.QuoteMeta(taken.String()) + `\) = -1 EADDRINUSE `).MatchString(stdout) {
				t.Errorf("no failed bind in the narration:\n%s", stdout)
			}
		})
	}

	for _, h := range []string{"-h", "-help", "--help"} {
		t.Run(h, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, h)
			if code != exitOK || stderr != "" {
				t.Errorf("exit code %d, stderr %q; want 0 and nothing", code, stderr)
			}
			for _, want := range []string{"Usage: refserver", "-addr", "-backlog", "-mode", "-max-conns-per-ip", "-nofile", "-shutdown-timeout", "-v6only", "SIGUSR1", "Exit codes"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("usage does not mention %s:\n%s", want, stdout)
				}
			}
		})
	}
}

// TestExposure: loopback says nothing; any other address says it is reachable and which
// limits are off. (Only the words are tested: the tests listen on loopback alone.)
func TestExposure(t *testing.T) {
	limited := options{maxConns: 1000, maxConnsPerIP: 50, idleTimeout: time.Minute}
	for _, tc := range []struct {
		addr string
		o    options
		want string
	}{
		{"127.0.0.1:7000", options{}, ""},
		{"127.9.9.9:7000", options{}, ""},
		{"[::1]:7000", options{}, ""},
		{"[::ffff:127.0.0.1]:7000", options{}, ""},
		{"0.0.0.0:7000", options{}, "0.0.0.0 is not loopback: any host that can route to this machine may connect; no limit is set by -max-conns, -max-conns-per-ip, -idle-timeout"},
		{"[::]:7000", limited, ":: is not loopback: any host that can route to this machine may connect"},
		{"192.0.2.1:7000", options{maxConns: 10, idleTimeout: time.Minute}, "; no limit is set by -max-conns-per-ip"},
	} {
		got := exposure(netip.MustParseAddrPort(tc.addr), tc.o)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) || (tc.o == limited && strings.Contains(got, "no limit")) {
			t.Errorf("exposure(%s) = %q; want %q", tc.addr, got, tc.want)
		}
	}
}

// TestNofile: -nofile lowers RLIMIT_NOFILE and says so with the kernel's answer; the stats
// line shows the new limit, and past it clients are shed.
func TestNofile(t *testing.T) {
	_, hard, err := sock.DescriptorLimit()
	if err != nil {
		t.Fatal(err)
	}
	const nofile = 30
	c := startCLI(t, "-addr", "127.0.0.1:0", "-mode", "echo", "-quiet", "-nofile", strconv.Itoa(nofile))
	if _, err := c.out.Wait(fmt.Sprintf("setrlimit(RLIMIT_NOFILE, {cur %d, max %d}) = 0", nofile, hard), 0); err != nil {
		t.Error(err)
	}
	c.signal(t, unix.SIGUSR1)
	stats, err := c.out.Wait("stats: open ", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, fmt.Sprintf("/%d; accept queue", nofile)) {
		t.Errorf("%q: want the descriptor limit %d", stats, nofile)
	}
	// As many clients as the limit: some cannot have a descriptor, and read end of stream.
	var eof int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range nofile {
		wg.Go(func() {
			cl, err := net.DialTimeout("tcp", c.addr.String(), 2*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			// Echo mode says nothing first: a held client times out here, a shed one reads EOF.
			cl.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := cl.Read(make([]byte, 1)); err == io.EOF {
				mu.Lock()
				eof++
				mu.Unlock()
			} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Errorf("client: %v; want a timeout (held) or end of stream (shed)", err)
			}
		})
	}
	wg.Wait()
	if eof == 0 || eof == nofile {
		t.Errorf("%d of %d clients shed; want some, not all", eof, nofile)
	}
	if line, err := c.out.Wait(": accept4 failed with EMFILE", 2*time.Second); err != nil || !strings.HasPrefix(line, "shed ") || !strings.Contains(line, fmt.Sprintf("RLIMIT_NOFILE %d", nofile)) {
		t.Errorf("shed line %q, %v", line, err)
	}
	c.signal(t, unix.SIGTERM)
	if code := c.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d; want 0", code)
	}
}
