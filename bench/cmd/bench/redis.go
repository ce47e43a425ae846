package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"portproof/internal/procfs"
)

// The Redis-protocol servers, in the order of the tables: redis-server itself (Debian's
// package, from PATH), miniredis (examples/miniredis, the fork of refserver) and
// gonet-redis (the same subset on Go net, servers/gonet-redis). redis-benchmark is the load.
var redisServerNames = []string{"redis-server", "miniredis", "gonet-redis"}

var redisLabels = map[string]string{
	"redis-server": "redis-server",
	"miniredis":    "miniredis",
	"gonet-redis":  "Go net",
}

// A redisScenario is one shape of redis-benchmark's load: -c clients, -P requests in
// flight on each.
type redisScenario struct {
	key, title        string
	clients, pipeline int
}

var redisScenarios = []redisScenario{
	{"redis50", "-c 50", 50, 1},
	{"redis1000", "-c 1000", 1000, 1},
	{"redis50p16", "-c 50 -P 16", 50, 16},
}

// redisTests are what `redis-benchmark -t ping,set,get` runs, in its order: "ping" is two
// tests, the inline PING and the RESP one. GET comes after SET on the same server, so it
// finds the key, as in redis-benchmark's own run.
var redisTests = []string{"PING_INLINE", "PING_MBULK", "SET", "GET"}

// mix names the four tests together: the whole invocation, as many requests of each.
const mix = "ping,set,get"

// redisRound is one round of one scenario against one server: a measure per test, and one
// of the mix.
type redisRound map[string]measure

type redisInfo struct {
	Server    string `json:"redis_server"`    // redis-server --version
	Benchmark string `json:"redis_benchmark"` // redis-benchmark --version
	IOThreads string `json:"io_threads"`      // CONFIG GET io-threads, read back from the running server
}

func redisScenarioByKey(k string) (redisScenario, bool) {
	i := slices.IndexFunc(redisScenarios, func(s redisScenario) bool { return s.key == k })
	if i < 0 {
		return redisScenario{}, false
	}
	return redisScenarios[i], true
}

// checkRedisTools fails with what to install when redis-server or redis-benchmark is
// missing, and otherwise says which versions run.
func checkRedisTools(servers []string) (redisInfo, error) {
	var info redisInfo
	version := func(tool string) (string, error) {
		out, err := exec.Command(tool, "--version").Output()
		if err != nil {
			return "", fmt.Errorf("%s --version: %v: the redis scenarios need redis-server and redis-benchmark (Debian: apt-get install redis-server redis-tools), or leave them out with -scenarios", tool, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	var err error
	if info.Benchmark, err = version("redis-benchmark"); err != nil {
		return info, err
	}
	if slices.Contains(servers, "redis-server") {
		if info.Server, err = version("redis-server"); err != nil {
			return info, err
		}
	}
	return info, nil
}

// startRedis starts one of the Redis-protocol servers fresh, each with what it needs to
// serve 127.0.0.1 and nothing more, and checks it answers PING.
func startRedis(cfg *config, name, profile string) (*server, error) {
	var s *server
	var err error
	switch name {
	case "redis-server":
		s, err = startRedisServer(cfg)
	case "miniredis":
		// Its own flags, as a person runs it: no line per connection, no idle timeout, and
		// its "miniredis: ready on ADDR; try: ..." line instead of "listening on".
		s, err = launch(cfg, name, filepath.Join(cfg.bin, name),
			[]string{"-addr", "127.0.0.1:0", "-loops", fmt.Sprint(cfg.procs), "-quiet", "-idle-timeout", "0"},
			miniredisReady)
	default: // gonet-redis, or another binary with the benchmark servers' flags
		s, err = startServer(cfg, name, profile, false)
	}
	if err != nil {
		return nil, err
	}
	if _, err := redisCommand(s.addr, "PING"); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: PING: %w", name, err)
	}
	return s, nil
}

// miniredisReady finds the address in "miniredis: ready on ADDR; try: ...".
func miniredisReady(line string) (string, bool) {
	_, rest, ok := strings.Cut(line, "ready on ")
	a, _, _ := strings.Cut(rest, ";")
	return a, ok
}

// startRedisServer runs redis-server in the foreground with no configuration file, on a
// port of its own on 127.0.0.1, persistence off, in a directory of its own, logging to
// stdout; "Ready to accept connections" says it is up.
func startRedisServer(cfg *config) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port: redis-server takes no port 0
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "portproof-bench-redis-*")
	if err != nil {
		return nil, err
	}
	s, err := launch(cfg, "redis-server", "redis-server",
		[]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--dir", dir, "--logfile", ""},
		func(line string) (string, bool) { return addr, strings.Contains(line, "Ready to accept connections") })
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.dir = dir
	return s, nil
}

// redisCommand sends one command and reads a one-line reply, or an array of bulk strings.
func redisCommand(addr netip.AddrPort, args ...string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write(req.Bytes()); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	line := func() (string, error) {
		l, err := r.ReadString('\n')
		return strings.TrimSuffix(l, "\r\n"), err
	}
	l, err := line()
	switch {
	case err != nil:
		return nil, err
	case strings.HasPrefix(l, "+"), strings.HasPrefix(l, ":"):
		return []string{l[1:]}, nil
	case !strings.HasPrefix(l, "*"):
		return nil, fmt.Errorf("reply %q", l)
	}
	n, _ := strconv.Atoi(l[1:])
	var out []string
	for range n {
		if _, err := line(); err != nil { // $len: the value is one line here
			return nil, err
		}
		v, err := line()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// runRedisRound runs scenario sc once against every Redis-protocol server, in the rotating
// order of runRound, and reports whether a run failed.
func runRedisRound(cfg *config, rep *report, sc redisScenario, round int) (failed bool) {
	order := slices.Clone(cfg.redisServers)
	k := round % len(order)
	order = append(order[k:], order[:k]...)
	for _, name := range order {
		rr, err := runRedisOne(cfg, rep, sc, name, round)
		if err != nil {
			failed = true
			fmt.Fprintf(os.Stderr, "  %-13s round %d/%d  %-13s ERROR: %v\n", sc.key, round+1, cfg.rounds, name, err)
			continue
		}
		rep.RedisRuns[sc.key][name] = append(rep.RedisRuns[sc.key][name], rr)
	}
	return failed
}

// runRedisOne starts a fresh server and measures one `redis-benchmark -t ping,set,get` on it.
func runRedisOne(cfg *config, rep *report, sc redisScenario, name string, round int) (redisRound, error) {
	profile := ""
	if cfg.profile != "" {
		profile = filepath.Join(cfg.profile, fmt.Sprintf("%s-%s-r%d", sc.key, name, round+1))
	}
	s, err := startRedis(cfg, name, profile)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	if name == "redis-server" && rep.Config.Redis.IOThreads == "" {
		if v, err := redisCommand(s.addr, "CONFIG", "GET", "io-threads"); err == nil && len(v) == 2 {
			rep.Config.Redis.IOThreads = v[1]
		}
	}
	rr, err := redisBench(cfg, s, sc, name)
	if err != nil {
		if aerr := s.alive(); aerr != nil {
			err = aerr
		}
		return nil, err
	}
	for _, t := range append(redisTests[:len(redisTests):len(redisTests)], mix) {
		m := rr[t]
		fmt.Fprintf(os.Stderr, "  %-13s round %d/%d  %-13s %-14s %9.0f requests/s, server CPU %.2f µs/request, %.2f read/write calls/request, %.2f switches/request (-n %.0f in %.2fs)\n",
			sc.key, round+1, cfg.rounds, name, t, m.Rate, m.CPUPerOp, m.RWPerOp, m.SwitchesPerOp, m.Ops, m.Seconds)
	}
	return rr, nil
}

// lastRates are the rates each test ran at in the latest measured run of a scenario and
// server: the next round sizes its warm-up from them.
var lastRates = map[[2]string]map[string]benchRow{}

// redisBench measures one `redis-benchmark -t ping,set,get` at the scenario's shape. It has
// no duration, only a number of requests per test (-n), so in the first round a short run
// (two pipelines per client) finds each test's rate; a run of -warmup's worth at those rates
// (or the previous round's) warms the server and finds them again, and the measured run
// asks for -duration's worth in all, ten pipelines per client at least, so that the
// clients' connecting stays a small part of it. The calibration is skipped when it can be
// because at 1000 clients an invocation spends most of a second opening them: redis-benchmark
// pauses after every 64. The server's CPU is read when each test's line comes out,
// which gives each test's share; the mix is the whole invocation, as many requests of each
// test, its clients' connecting and closing included, as redis-benchmark's own figures do.
func redisBench(cfg *config, s *server, sc redisScenario, name string) (redisRound, error) {
	// n is how many requests of each test take d at the rates of an earlier run, pipelines
	// per client at least.
	n := func(rows map[string]benchRow, d time.Duration, pipelines int) int {
		var per float64 // seconds for one request of each test
		for _, t := range redisTests {
			per += 1 / rows[t].rate
		}
		return max(sc.clients*sc.pipeline*pipelines, int(d.Seconds()/per))
	}
	rates := lastRates[[2]string{sc.key, name}]
	if rates == nil {
		res, err := redisBenchmark(cfg, s, sc, sc.clients*sc.pipeline*2, nil)
		if err != nil {
			return nil, err
		}
		rates = res.rows
	}
	res, err := redisBenchmark(cfg, s, sc, n(rates, cfg.warmup, 2), nil)
	if err != nil {
		return nil, err
	}
	count := n(res.rows, cfg.duration, 10)
	var marks []sample // the start, then one as each test's line comes out
	mark := func(client int) {
		var m sample
		var err error
		if m.server, err = procfs.CPU(s.pid); err != nil {
			return // the server has gone: the run fails, and says why
		}
		m.io, _ = procfs.ReadIO(s.pid)
		m.switches, _ = procfs.ContextSwitches(s.pid)
		if client > 0 {
			m.client, _ = procfs.CPU(client)
		}
		m.at = time.Now()
		marks = append(marks, m)
	}
	mark(0)
	res, err = redisBenchmark(cfg, s, sc, count, mark)
	if err != nil {
		return nil, err
	}
	if len(marks) != len(redisTests)+1 {
		return nil, fmt.Errorf("the server's CPU read %d times, not %d", len(marks), len(redisTests)+1)
	}
	end := marks[len(marks)-1]
	end.at = marks[0].at.Add(res.wall)
	end.client = res.client
	if end.server, err = procfs.CPU(s.pid); err != nil {
		return nil, err
	}
	end.io, _ = procfs.ReadIO(s.pid)
	end.switches, _ = procfs.ContextSwitches(s.pid)
	rr := redisRound{}
	var inv float64
	for i, t := range redisTests {
		row := res.rows[t]
		rr[t] = between(marks[i], marks[i+1], float64(count), row.rate)
		m := rr[t]
		m.P50, m.P99 = row.p50, row.p99
		rr[t] = m
		inv += 1 / row.rate
	}
	rr[mix] = between(marks[0], end, float64(count*len(redisTests)), float64(len(redisTests))/inv)
	lastRates[[2]string{sc.key, name}] = res.rows
	return rr, nil
}

// sample is the server's counters, and the load generator's CPU time, at one moment.
type sample struct {
	at       time.Time
	server   time.Duration
	io       procfs.IO
	switches int64
	client   time.Duration
}

// between is the measure of ops requests from a to b, at redis-benchmark's rate.
func between(a, b sample, ops, rate float64) measure {
	m := measure{Ops: ops, Seconds: b.at.Sub(a.at).Seconds(), Rate: rate, CPU: (b.server - a.server).Seconds()}
	m.CPUPerOp = m.CPU / ops * 1e6
	m.RWPerOp = float64((b.io.Syscr-a.io.Syscr)+(b.io.Syscw-a.io.Syscw)) / ops
	m.SwitchesPerOp = float64(b.switches-a.switches) / ops
	m.TotalPerOp = (b.server - a.server + b.client - a.client).Seconds() / ops * 1e6
	return m
}

// benchResult is what one redis-benchmark invocation reported, and what it cost.
type benchResult struct {
	rows   map[string]benchRow
	wall   time.Duration // the invocation, start to exit
	client time.Duration // its own CPU time (rusage)
}

// benchRow is one test's line: redis-benchmark's requests per second and latency
// percentiles (µs).
type benchRow struct{ rate, p50, p99 float64 }

// redisBenchmark runs `redis-benchmark -t ping,set,get -n n` at the scenario's -c and -P,
// calling mark with its pid as each test's --csv line comes out, and reads the lines. Any
// error it reports ends the run: since 7.0 it exits at the first error reply; a line on
// stderr other than the CONFIG warning is taken as one too.
func redisBenchmark(cfg *config, s *server, sc redisScenario, n int, mark func(pid int)) (benchResult, error) {
	res := benchResult{rows: map[string]benchRow{}}
	ctx, cancel := context.WithTimeout(context.Background(), max(60*time.Second, 10*(cfg.warmup+cfg.duration)))
	defer cancel()
	// stdbuf -oL: to a pipe, redis-benchmark's stdout would hold every line to its exit.
	// stdbuf execs it, so the pid is redis-benchmark's.
	cmd := exec.CommandContext(ctx, "stdbuf", "-oL", "redis-benchmark", "-h", s.addr.Addr().String(), "-p", strconv.Itoa(int(s.addr.Port())),
		"-c", strconv.Itoa(sc.clients), "-P", strconv.Itoa(sc.pipeline), "-n", strconv.Itoa(n),
		"-t", "ping,set,get", "--csv")
	var stdout, stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("redis-benchmark: %w", err)
	}
	sc2 := bufio.NewScanner(out)
	for sc2.Scan() {
		// A test's line comes out as soon as it ends, before its clients are closed and the
		// next test's are opened: the moment to read the counters.
		if mark != nil && !strings.HasPrefix(sc2.Text(), `"test"`) {
			mark(cmd.Process.Pid)
		}
		stdout.WriteString(sc2.Text() + "\n")
	}
	err = cmd.Wait()
	res.wall = time.Since(t0)
	say := func() string { return strings.TrimSpace(stdout.String() + " " + stderr.String()) }
	if err != nil {
		return res, fmt.Errorf("redis-benchmark: %v: %s", err, say())
	}
	res.client = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	for l := range strings.SplitSeq(strings.TrimSpace(stderr.String()), "\n") {
		// miniredis and gonet-redis answer CONFIG GET with an empty array: redis-benchmark
		// cannot tell whether they persist, and says so.
		if l = strings.TrimSpace(l); l != "" && l != "WARNING: Could not fetch server CONFIG" {
			return res, fmt.Errorf("redis-benchmark: %s", say())
		}
	}
	rows, err := csv.NewReader(&stdout).ReadAll()
	if err != nil || len(rows) != len(redisTests)+1 {
		return res, fmt.Errorf("redis-benchmark: want a header and a line per test: %q (%v)", rows, err)
	}
	var perr error
	f := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		perr = cmp(perr, err)
		return v
	}
	for i, row := range rows[1:] {
		if len(row) < 7 || row[0] != redisTests[i] {
			return res, fmt.Errorf("redis-benchmark: line %d: %q, want %s", i+2, row, redisTests[i])
		}
		r := benchRow{rate: f(row[1]), p50: f(row[4]) * 1e3, p99: f(row[6]) * 1e3}
		if perr != nil || r.rate <= 0 {
			return res, fmt.Errorf("redis-benchmark: %q: %v", row, cmp(perr, errors.New("no rate")))
		}
		res.rows[row[0]] = r
	}
	return res, nil
}
