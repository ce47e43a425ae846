//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"portproof/internal/testkit"
	"portproof/refserver"
)

// The protocol's own tests, then the real clients: redis-cli and redis-benchmark (Debian's
// redis-tools), which nobody here wrote.

func TestParseSplitAtEveryByte(t *testing.T) {
	cmds := []string{"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$11\r\nhello world\r\n", "PING\r\n", "*1\r\n$4\r\nPING\r\n"}
	for _, cmd := range cmds {
		for k := range len(cmd) {
			args, n, err := parse([]byte(cmd[:k]), nil)
			if err != nil || n != 0 {
				t.Fatalf("%q cut at %d: took %d (%v) of a command not yet whole", cmd, k, n, err)
			}
			if len(args) > 0 && cmd[0] == '*' {
				t.Fatalf("%q cut at %d: words %q from a partial command", cmd, k, args)
			}
		}
		args, n, err := parse([]byte(cmd), nil)
		if err != nil || n != len(cmd) || len(args) == 0 {
			t.Fatalf("%q whole: took %d of %d, %q, %v", cmd, n, len(cmd), args, err)
		}
	}
}

func TestParseManyInOneRead(t *testing.T) {
	var in bytes.Buffer
	for i := range 1000 {
		fmt.Fprintf(&in, "*2\r\n$4\r\nECHO\r\n$%d\r\n%d\r\n", len(strconv.Itoa(i)), i)
	}
	b := in.Bytes()
	for i := range 1000 {
		args, n, err := parse(b, nil)
		if err != nil || n == 0 || string(args[1]) != strconv.Itoa(i) {
			t.Fatalf("command %d: %q, %d, %v", i, args, n, err)
		}
		b = b[n:]
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes left", len(b))
	}
}

// start runs miniredis's Handler on refserver, as main does, on a port the kernel picks.
func start(t *testing.T) netip.AddrPort {
	t.Helper()
	srv, err := refserver.New(refserver.Config{
		Addr: netip.MustParseAddrPort("127.0.0.1:0"), MaxInput: 8 << 20, MaxOutput: replyMark + 8<<20,
		Handler: redis{db: &store{keys: map[string][]byte{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if st := srv.Stats(); st.InputCut+st.OutputCut > 0 {
			t.Errorf("stats: %s: nothing may be cut for these clients", st)
		}
	})
	return srv.Addr()
}

// tool runs one of the redis-tools against addr, with input on its stdin.
func tool(t *testing.T, addr netip.AddrPort, input []byte, name string, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath(name)
	testkit.Require(t, err == nil, name+" is not installed (Debian: apt-get install redis-tools)")
	args = append([]string{"-h", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port()))}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = bytes.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func TestRedisCLI(t *testing.T) {
	addr := start(t)
	cli := func(input []byte, args ...string) string {
		return string(tool(t, addr, input, "redis-cli", args...))
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ping"}, "PONG\n"},
		{[]string{"set", "greeting", "hello world"}, "OK\n"},
		{[]string{"get", "greeting"}, "hello world\n"},
		{[]string{"incr", "n"}, "1\n"},
		{[]string{"incr", "n"}, "2\n"},
		{[]string{"exists", "greeting", "n", "nope"}, "2\n"},
		{[]string{"del", "greeting"}, "1\n"},
		{[]string{"get", "greeting"}, "\n"},
		{[]string{"echo", "spaces and\ttabs"}, "spaces and\ttabs\n"},
		{[]string{"frobnicate"}, "ERR unknown command or wrong number of arguments for 'FROBNICATE'\n"},
	} {
		if got := cli(nil, c.args...); strings.TrimSpace(got) != strings.TrimSpace(c.want) {
			t.Errorf("redis-cli %q: %q, want %q", c.args, got, c.want)
		}
	}

	// A 1 MiB value, random bytes, in with -x (the value is stdin) and back byte for byte.
	big := make([]byte, 1<<20)
	rand.Read(big)
	if got := cli(big, "-x", "set", "big"); got != "OK\n" {
		t.Fatalf("set big: %q", got)
	}
	got := []byte(cli(nil, "--raw", "get", "big"))
	if !bytes.Equal(bytes.TrimSuffix(got, []byte("\n")), big) {
		t.Fatalf("get big: %d bytes back, not the %d sent", len(got), len(big))
	}

	// --pipe: ten thousand commands in one stream, as mass insertion does.
	var cmds bytes.Buffer
	for i := range 10000 {
		fmt.Fprintf(&cmds, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$%d\r\nv%d\r\n", len(strconv.Itoa(i))+1, i, len(strconv.Itoa(i))+1, i)
	}
	pipe := cli(cmds.Bytes(), "--pipe")
	if !strings.Contains(pipe, "errors: 0, replies: 10000") {
		t.Fatalf("redis-cli --pipe: %s", pipe)
	}
	if got := cli(nil, "get", "k9999"); got != "v9999\n" {
		t.Errorf("get k9999 after --pipe: %q", got)
	}
	t.Logf("redis-cli: %d commands, a 1 MiB value back byte for byte, and --pipe: %s", 10,
		strings.TrimSpace(pipe[strings.LastIndex(pipe, "errors"):]))
}

// TestPipelinedLargeRepliesToASlowReader: a hundred GETs of a 1 MiB value in one write, and
// a client that reads slowly: every reply arrives whole, in order; none is cut.
func TestPipelinedLargeRepliesToASlowReader(t *testing.T) {
	addr := start(t)
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	value := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	fmt.Fprintf(c, "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n%s\r\n", len(value), value)
	r := bufio.NewReaderSize(c, 64<<10)
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("SET: %q, %v", line, err)
	}
	const n = 100
	c.Write(bytes.Repeat([]byte("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n"), n))
	start := time.Now()
	want := fmt.Sprintf("$%d\r\n%s\r\n", len(value), value)
	got := make([]byte, len(want))
	for i := range n {
		for off := 0; off < len(got); {
			m, err := io.ReadFull(r, got[off:min(off+128<<10, len(got))])
			if err != nil {
				t.Fatalf("reply %d of %d: %v", i+1, n, err)
			}
			off += m
			time.Sleep(time.Millisecond)
		}
		if string(got) != want {
			t.Fatalf("reply %d of %d is not the value", i+1, n)
		}
	}
	t.Logf("%d pipelined GETs of a 1 MiB value, read slowly: all %d MiB delivered in %v",
		n, n, time.Since(start).Round(time.Millisecond))
}

// TestRedisBenchmark: a short run of redis-benchmark, which must report no error.
func TestRedisBenchmark(t *testing.T) {
	addr := start(t)
	out := string(tool(t, addr, nil, "redis-benchmark", "-t", "ping,set,get", "-n", "20000", "-c", "50", "-q"))
	var results []string
	for _, line := range strings.Split(out, "\r") {
		if line = strings.TrimSpace(line); strings.Contains(line, "requests per second") {
			results = append(results, line)
		}
	}
	if strings.Contains(strings.ToLower(out), "error") || len(results) != 4 {
		t.Fatalf("redis-benchmark: %d results (want PING_INLINE, PING_MBULK, SET, GET):\n%s", len(results), out)
	}
	t.Logf("redis-benchmark -t ping,set,get -n 20000 -c 50: %s", strings.Join(results, "; "))
}
