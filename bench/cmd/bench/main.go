// Command bench runs the echo servers of bench/servers side by side: every scenario against
// every server in alternation, several rounds, then prints the medians with their ratios to
// Go net and writes the table and a chart into the docs page (make bench). Then it does the
// same for three Redis-protocol servers under redis-benchmark: redis-server, miniredis (the
// fork of refserver in examples/) and the same subset on Go net, with ratios to redis-server.
//
// It runs in a network namespace of its own when it may (root, or unprivileged user
// namespaces): the servers and the load share a private loopback, and the TIME_WAIT sockets
// of the connection-rate scenario vanish with it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"portproof/internal/netns"
	"portproof/internal/procfs"
)

type config struct {
	rounds    int
	duration  time.Duration
	warmup    time.Duration
	procs     int
	idleConns int
	bin       string
	page      string
	svg       string
	jsonOut   string
	profile   string
	servers   []string
	scenarios []scenario
	// The redis scenarios, their servers, and the versions of redis-server and redis-benchmark.
	redisServers   []string
	redisScenarios []redisScenario
	redis          redisInfo
	host           bool
	netns          string // "private" or why not
}

func main() {
	cfg, servers, redisServers, scens, replay := parseFlags()
	if replay != "" {
		os.Exit(replayReport(cfg, replay))
	}
	enterNamespace(cfg)
	if err := cfg.resolve(servers, redisServers, scens); err != nil {
		fatal(err)
	}
	rep := newReport(cfg)
	start := time.Now()
	fmt.Fprintf(os.Stderr, "bench: %d rounds of %v (+%v warm-up), servers %s, redis servers %s, GOMAXPROCS %d, network namespace: %s\n",
		cfg.rounds, cfg.duration, cfg.warmup, strings.Join(cfg.servers, ", "), strings.Join(cfg.redisServers, ", "), cfg.procs, cfg.netns)
	failed := false
	for _, sc := range cfg.scenarios {
		rep.Runs[sc.key] = map[string][]measure{}
		for r := range cfg.rounds {
			failed = runRound(cfg, rep, sc, r) || failed
		}
	}
	for _, sc := range cfg.redisScenarios {
		rep.RedisRuns[sc.key] = map[string][]redisRound{}
		for r := range cfg.rounds {
			failed = runRedisRound(cfg, rep, sc, r) || failed
		}
	}
	rep.Machine.Elapsed = time.Since(start).Round(time.Second).String()
	rep.Machine.LoadEnd = procfs.Loadavg()
	if err := emit(cfg, rep); err != nil {
		fatal(err)
	}
	if failed {
		fmt.Fprintln(os.Stderr, "bench: some runs failed (see ERROR above)")
		os.Exit(1)
	}
}

// parseFlags reads the command line; the lists of servers and scenarios come back as given,
// for resolve, and so does -replay.
func parseFlags() (cfg *config, servers, redisServers, scens, replay string) {
	cfg = &config{}
	flag.IntVar(&cfg.rounds, "rounds", 5, "`rounds`: each scenario runs against every server this many times, in alternation")
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured `time` of one timed run")
	flag.DurationVar(&cfg.warmup, "warmup", 0, "load before the measured window (0: a quarter of -duration, 200ms to 1s)")
	flag.IntVar(&cfg.procs, "procs", runtime.NumCPU(), "GOMAXPROCS of every server, and the event loops of gnet and refserver")
	flag.IntVar(&cfg.idleConns, "idle-conns", 15000, "connections of the idle scenario")
	flag.StringVar(&cfg.bin, "bin", "", "`directory` of the server binaries (default: this program's own)")
	flag.StringVar(&cfg.page, "page", "", "docs `page` whose generated section gets the results (empty: none)")
	flag.StringVar(&cfg.svg, "svg", "", "where to write the chart, an SVG `file` (empty: none)")
	flag.StringVar(&cfg.jsonOut, "json", "", "write every round's figures as JSON to `file`")
	flag.StringVar(&cfg.profile, "profile", "", "`directory`: have each server write a CPU profile per run there")
	flag.StringVar(&servers, "servers", strings.Join(serverNames, ","), "servers to run: "+strings.Join(serverNames, ", ")+", or another binary in -bin")
	flag.StringVar(&redisServers, "redis-servers", strings.Join(redisServerNames, ","), "servers of the redis scenarios: "+strings.Join(redisServerNames, ", ")+" (redis-server from PATH, the others from -bin), or another binary in -bin")
	flag.StringVar(&scens, "scenarios", "pingpong50,pingpong1000,bulk,connrate,idle,redis50,redis1000,redis50p16", "scenarios to run")
	flag.BoolVar(&cfg.host, "host", false, "run on the host's loopback, not in a private network namespace")
	flag.StringVar(&replay, "replay", "", "measure nothing: print and write the tables, chart and page from a -json `file` of an earlier run")
	flag.Parse()
	return cfg, servers, redisServers, scens, replay
}

// enterNamespace runs the benchmark again in a private network namespace and exits with
// its code, unless -host says not to or this machine refuses (then it goes on, on the host's
// loopback, and says why). Inside, it widens the port range, so that connect(2) never nears
// half of it (see the docs page).
func enterNamespace(cfg *config) {
	if !cfg.host && !netns.Inside() {
		code, _, err := netns.Reexec()
		if err == nil {
			os.Exit(code)
		}
		if !errors.Is(err, netns.ErrRefused) {
			fatal(err)
		}
		fmt.Fprintf(os.Stderr, "bench: %v; running on the host's loopback\n", err)
		cfg.netns = "none (" + err.Error() + ")"
	}
	switch {
	case netns.Inside():
		if err := netns.Setup(map[string]string{"net.ipv4.ip_local_port_range": "1024 65535"}); err != nil {
			fatal(err)
		}
		cfg.netns = "private"
	case cfg.netns == "":
		cfg.netns = "none (-host)"
	}
}

// resolve fills in the defaults that depend on others (-warmup, -bin) and checks the
// servers and scenarios asked for, and that redis-server and redis-benchmark are here when
// a redis scenario is.
func (cfg *config) resolve(servers, redisServers, scens string) error {
	if cfg.warmup == 0 {
		cfg.warmup = min(max(cfg.duration/4, 200*time.Millisecond), time.Second)
	}
	if cfg.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.bin = filepath.Dir(exe)
	}
	cfg.servers = strings.Split(servers, ",")
	for _, s := range cfg.servers {
		// Any other binary in -bin that takes the same flags may join, a patched refserver
		// say: go build -o bin/refserver-next ./servers/refserver against a changed copy.
		if _, err := os.Stat(filepath.Join(cfg.bin, s)); serverLabels[s] == "" && err != nil {
			return fmt.Errorf("-servers: unknown %q (want some of %s, or a binary in %s)", s, strings.Join(serverNames, ","), cfg.bin)
		}
	}
	for _, k := range strings.Split(scens, ",") {
		if rs, ok := redisScenarioByKey(k); ok {
			cfg.redisScenarios = append(cfg.redisScenarios, rs)
			continue
		}
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.key == k })
		if i < 0 {
			return fmt.Errorf("-scenarios: unknown %q", k)
		}
		cfg.scenarios = append(cfg.scenarios, scenarios[i])
	}
	if len(cfg.redisScenarios) > 0 {
		cfg.redisServers = strings.Split(redisServers, ",")
		for _, s := range cfg.redisServers {
			if _, err := os.Stat(filepath.Join(cfg.bin, s)); s != "redis-server" && err != nil {
				return fmt.Errorf("-redis-servers: no %s in %s (make bench builds miniredis and gonet-redis there)", s, cfg.bin)
			}
		}
		var err error
		if cfg.redis, err = checkRedisTools(cfg.redisServers); err != nil {
			return err
		}
	}
	if cfg.profile != "" {
		return os.MkdirAll(cfg.profile, 0o755)
	}
	return nil
}

// newReport starts the report with the machine and the run's settings.
func newReport(cfg *config) *report {
	rep := &report{
		Machine: machine(cfg),
		Config: reportConfig{Rounds: cfg.rounds, Duration: cfg.duration.String(), Warmup: cfg.warmup.String(),
			Procs: cfg.procs, IdleConns: cfg.idleConns, Netns: cfg.netns, PortRange: netns.Sysctl("net.ipv4.ip_local_port_range"),
			Servers: cfg.servers, RedisServers: cfg.redisServers, Redis: cfg.redis},
		Runs:      map[string]map[string][]measure{},
		RedisRuns: map[string]map[string][]redisRound{},
	}
	for _, sc := range cfg.scenarios {
		rep.Config.Scenarios = append(rep.Config.Scenarios, sc.key)
	}
	for _, sc := range cfg.redisScenarios {
		rep.Config.Scenarios = append(rep.Config.Scenarios, sc.key)
	}
	return rep
}

// runRound runs scenario sc once against every server and reports whether a run failed.
// The servers alternate, and who goes first rotates with the round, so that a slow spell of
// a shared machine does not always fall on the same server.
func runRound(cfg *config, rep *report, sc scenario, round int) (failed bool) {
	order := slices.Clone(cfg.servers)
	k := round % len(order)
	order = append(order[k:], order[:k]...)
	for _, name := range order {
		m, err := runOne(cfg, sc, name, round)
		line := describe(sc, m)
		if err != nil {
			failed = true
			line += "  ERROR: " + err.Error()
		}
		fmt.Fprintf(os.Stderr, "  %-13s round %d/%d  %-16s %s\n", sc.key, round+1, cfg.rounds, name, line)
		if err == nil || sc.key == "idle" {
			rep.Runs[sc.key][name] = append(rep.Runs[sc.key][name], m)
		}
	}
	return failed
}

// emit summarizes the rounds, prints the tables and writes what was asked: JSON, chart, page.
func emit(cfg *config, rep *report) error {
	rep.summarize(cfg)
	rep.summarizeRedis(cfg)
	fmt.Println()
	fmt.Print(rep.write(cfg, plain))
	if cfg.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if cfg.svg != "" && len(cfg.scenarios) > 0 {
		if err := os.MkdirAll(filepath.Dir(cfg.svg), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(cfg.svg, []byte(rep.svg(cfg)), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", cfg.svg)
	}
	if cfg.page != "" {
		if err := rep.writePage(cfg); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote the generated section of %s\n", cfg.page)
	}
	return nil
}

// replayReport re-renders an earlier run's -json file: the tables, chart and page section
// change with the code that draws them, the figures do not.
func replayReport(cfg *config, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		fatal(fmt.Errorf("%s: %w", path, err))
	}
	rep.Summary, rep.Goals, rep.RedisSummary, rep.RedisGoals = nil, nil, nil, nil
	cfg.servers, cfg.redisServers = rep.Config.Servers, rep.Config.RedisServers
	if len(cfg.servers) == 0 {
		for _, n := range serverNames {
			if len(rep.Runs[scenarios[0].key][n]) > 0 || len(rep.Runs["idle"][n]) > 0 {
				cfg.servers = append(cfg.servers, n)
			}
		}
	}
	for _, sc := range scenarios {
		if _, ok := rep.Runs[sc.key]; ok && (len(rep.Config.Scenarios) == 0 || slices.Contains(rep.Config.Scenarios, sc.key)) {
			cfg.scenarios = append(cfg.scenarios, sc)
		}
	}
	for _, sc := range redisScenarios {
		if _, ok := rep.RedisRuns[sc.key]; ok && slices.Contains(rep.Config.Scenarios, sc.key) {
			cfg.redisScenarios = append(cfg.redisScenarios, sc)
		}
	}
	cfg.idleConns = rep.Config.IdleConns
	if cfg.jsonOut == path {
		cfg.jsonOut = "" // it is the input
	}
	if err := emit(cfg, &rep); err != nil {
		fatal(err)
	}
	return 0
}

// runOne starts a fresh server, runs one scenario against it and stops it.
func runOne(cfg *config, sc scenario, name string, round int) (measure, error) {
	profile := ""
	if cfg.profile != "" {
		profile = filepath.Join(cfg.profile, fmt.Sprintf("%s-%s-r%d", sc.key, name, round+1))
	}
	s, err := startServer(cfg, name, profile, sc.key == "idle")
	if err != nil {
		return measure{}, err
	}
	defer s.stop()
	m, err := sc.run(cfg, s)
	if err != nil {
		if aerr := s.alive(); aerr != nil {
			err = aerr
		}
	}
	return m, err
}

func describe(sc scenario, m measure) string {
	if sc.key == "idle" {
		return fmt.Sprintf("held %d/%d in %.1fs, %.2f KiB RSS/conn, %.1f fds/conn", m.Held, m.Target, m.Seconds, m.RSSPerConn, m.FDsPerConn)
	}
	s := fmt.Sprintf("%10.0f %s, server CPU %.2f µs/op, %.2f read/write calls/op, %.2f switches/op", m.Rate, sc.unit, m.CPUPerOp, m.RWPerOp, m.SwitchesPerOp)
	if m.P50 > 0 {
		s += fmt.Sprintf(", p50 %.0f µs, p99 %.0f µs", m.P50, m.P99)
	}
	return s
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}
