package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"

	"portproof/bench/internal/page"
	"portproof/internal/procfs"
)

type report struct {
	Machine machineInfo                     `json:"machine"`
	Config  reportConfig                    `json:"config"`
	Runs    map[string]map[string][]measure `json:"runs"` // scenario, server, rounds
	Summary []summary                       `json:"-"`    // NaN where a ratio has no base: see MarshalJSON
	Goals   []goal                          `json:"goals"`
	// The Redis-protocol servers under redis-benchmark: scenario, server, rounds.
	RedisRuns    map[string]map[string][]redisRound `json:"redis_runs,omitempty"`
	RedisSummary []redisSummary                     `json:"-"` // as Summary
	RedisGoals   []goal                             `json:"redis_goals,omitempty"`
}

// MarshalJSON writes the summary too, leaving out the figures that are NaN (a ratio to a
// server that did not run), which encoding/json refuses.
func (r *report) MarshalJSON() ([]byte, error) {
	type plain report // without this method
	return json.Marshal(struct {
		*plain
		Summary      []map[string]any `json:"summary"`
		RedisSummary []map[string]any `json:"redis_summary,omitempty"`
	}{(*plain)(r), finiteRows(r.Summary), finiteRows(r.RedisSummary)})
}

// finiteRows is a summary's rows as JSON objects without their NaN and zero figures, the
// embedded medians' fields among the row's own, as encoding/json writes them.
func finiteRows[T any](summaries []T) []map[string]any {
	var rows []map[string]any
	for _, s := range summaries {
		row := map[string]any{}
		finiteFields(reflect.ValueOf(s), row)
		rows = append(rows, row)
	}
	return rows
}

func finiteFields(v reflect.Value, row map[string]any) {
	for i := range v.NumField() {
		f := v.Field(i)
		if v.Type().Field(i).Anonymous {
			finiteFields(f, row)
			continue
		}
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if f.Kind() == reflect.Float64 && (math.IsNaN(f.Float()) || math.IsInf(f.Float(), 0)) {
			continue
		}
		if f.IsZero() && f.Kind() != reflect.String {
			continue
		}
		row[name] = f.Interface()
	}
}

type machineInfo struct {
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Go        string `json:"go"`
	Date      string `json:"date"`
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
	Elapsed   string `json:"elapsed"`
	Refserver string `json:"refserver"` // the commit measured
}

type reportConfig struct {
	Rounds    int      `json:"rounds"`
	Duration  string   `json:"duration"`
	Warmup    string   `json:"warmup"`
	Procs     int      `json:"gomaxprocs"`
	IdleConns int      `json:"idle_conns"`
	Netns     string   `json:"netns"`
	PortRange string   `json:"port_range"`
	Servers   []string `json:"servers"`
	Scenarios []string `json:"scenarios"`
	// RedisServers are the Redis-protocol servers of the redis scenarios.
	RedisServers []string  `json:"redis_servers,omitempty"`
	Redis        redisInfo `json:"redis"`
}

func machine(*config) machineInfo {
	return machineInfo{Kernel: procfs.KernelRelease(), CPUs: runtime.NumCPU(), CPUModel: procfs.CPUModel(),
		Go: runtime.Version(), Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), LoadStart: procfs.Loadavg(),
		Refserver: refserverCommit()}
}

// refserverCommit names the refserver measured: the last commit that touched refserver/,
// and whether the working tree differs from it.
func refserverCommit() string {
	out, err := exec.Command("git", "log", "-1", "--format=%h (%cs)", "--", ":/refserver").Output()
	if err != nil || len(out) == 0 {
		return "?"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--", ":/refserver").Output(); err == nil && len(st) > 0 {
		c += " with uncommitted changes"
	}
	return c
}

// medians are a scenario's figures over its rounds, for the echo and the redis reports.
type medians struct {
	Rounds      int     `json:"rounds"`
	Rate        float64 `json:"rate"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	CPUPerOp    float64 `json:"cpu_op_us"`
	RWPerOp     float64 `json:"rw_op"`
	SwitchPerOp float64 `json:"switches_op"`
	TotalPerOp  float64 `json:"total_cpu_op_us"`
}

func mediansOf(ms []measure) medians {
	return medians{Rounds: len(ms),
		Rate:        median(ms, func(m measure) float64 { return m.Rate }),
		P50:         median(ms, func(m measure) float64 { return m.P50 }),
		P99:         median(ms, func(m measure) float64 { return m.P99 }),
		CPUPerOp:    median(ms, func(m measure) float64 { return m.CPUPerOp }),
		RWPerOp:     median(ms, func(m measure) float64 { return m.RWPerOp }),
		SwitchPerOp: median(ms, func(m measure) float64 { return m.SwitchesPerOp }),
		TotalPerOp:  median(ms, func(m measure) float64 { return m.TotalPerOp }),
	}
}

// summary is the medians of one scenario and server over the rounds, and their ratios.
type summary struct {
	Scenario string `json:"scenario"`
	Server   string `json:"server"`
	medians
	TotalVsGo  float64 `json:"total_vs_gonet"`
	RateVsGo   float64 `json:"rate_vs_gonet"`
	CPUVsGo    float64 `json:"cpu_vs_gonet"`
	CPUVsGnet  float64 `json:"cpu_vs_gnet"`
	CPUVsC     float64 `json:"cpu_vs_c"` // the limit: the C epoll server
	Target     int     `json:"target,omitempty"`
	Held       float64 `json:"held,omitempty"`
	RSSPerConn float64 `json:"rss_kib_conn,omitempty"`
	RSSVsGo    float64 `json:"rss_vs_gonet,omitempty"`
	RSSVsGnet  float64 `json:"rss_vs_gnet,omitempty"`
	FDsPerConn float64 `json:"fds_conn,omitempty"`
}

type goal struct {
	Text    string `json:"goal"`
	Figures string `json:"figures"`
	Verdict string `json:"verdict"` // "holds", "misses narrowly", "misses", "not measured"
}

func median(ms []measure, f func(measure) float64) float64 {
	if len(ms) == 0 {
		return math.NaN()
	}
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (r *report) find(scen, server string) *summary {
	for i := range r.Summary {
		if r.Summary[i].Scenario == scen && r.Summary[i].Server == server {
			return &r.Summary[i]
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return a / b
}

func (r *report) summarize(cfg *config) {
	for _, sc := range cfg.scenarios {
		for _, name := range cfg.servers {
			ms := r.Runs[sc.key][name]
			s := summary{Scenario: sc.key, Server: name, medians: mediansOf(ms)}
			if sc.key == "idle" {
				s.Target = cfg.idleConns
				s.Held = median(ms, func(m measure) float64 { return float64(m.Held) })
				s.RSSPerConn = median(ms, func(m measure) float64 { return m.RSSPerConn })
				s.FDsPerConn = median(ms, func(m measure) float64 { return m.FDsPerConn })
			}
			r.Summary = append(r.Summary, s)
		}
	}
	for i := range r.Summary {
		s := &r.Summary[i]
		nan := math.NaN()
		s.RateVsGo, s.CPUVsGo, s.RSSVsGo, s.CPUVsGnet, s.RSSVsGnet, s.TotalVsGo = nan, nan, nan, nan, nan, nan
		s.CPUVsC = nan
		if c := r.find(s.Scenario, "c-epoll"); c != nil {
			s.CPUVsC = ratio(s.CPUPerOp, c.CPUPerOp)
		}
		if g := r.find(s.Scenario, "gonet"); g != nil {
			s.RateVsGo, s.CPUVsGo, s.RSSVsGo = ratio(s.Rate, g.Rate), ratio(s.CPUPerOp, g.CPUPerOp), ratio(s.RSSPerConn, g.RSSPerConn)
			s.TotalVsGo = ratio(s.TotalPerOp, g.TotalPerOp)
		}
		if g := r.find(s.Scenario, "gnet"); g != nil {
			s.CPUVsGnet, s.RSSVsGnet = ratio(s.CPUPerOp, g.CPUPerOp), ratio(s.RSSPerConn, g.RSSPerConn)
		}
	}
	r.Goals = r.goals(cfg)
}

// verdict: at most limit holds; within 5% over it is inside this machine's noise.
func verdict(v, limit float64) string {
	switch {
	case math.IsNaN(v):
		return "not measured"
	case v <= limit:
		return "holds"
	case v <= limit*1.05:
		return "misses narrowly"
	}
	return "misses"
}

func (r *report) goals(cfg *config) []goal {
	var gs []goal
	get := func(scen string) *summary { return r.find(scen, "refserver") }
	// worst is one goal over every scenario that ran: its figures name each scenario's
	// ratio of medians and the spread of the ratios round by round (the servers alternate,
	// so a round's pair ran minutes apart at most), its verdict is the worst median's.
	worst := func(text string, limit float64, base string, of func(*summary) float64, idle func(*summary) float64) {
		var w float64
		var at []string
		for _, sc := range cfg.scenarios {
			s, f := get(sc.key), of
			if sc.key == "idle" {
				f = idle
			}
			if s == nil || f == nil || math.IsNaN(f(s)) {
				continue
			}
			fig := fmt.Sprintf("%s %.2f", sc.key, f(s))
			if sc.key == "idle" {
				fig = fmt.Sprintf("idle RSS %.2f", f(s))
			} else if lo, hi, ok := r.roundRatios(sc.key, "refserver", base); ok {
				fig += fmt.Sprintf(" (rounds %.2f to %.2f)", lo, hi)
			}
			at = append(at, fig)
			w = max(w, f(s))
		}
		if len(at) > 0 {
			gs = append(gs, goal{text, strings.Join(at, ", "), verdict(w, limit)})
		}
	}
	worst("server CPU per operation at most 1.10 × the C server's, in every scenario", 1.10, "c-epoll",
		func(s *summary) float64 { return s.CPUVsC }, nil)
	worst("at most 1.00 × Go net's in every scenario (CPU per operation; RSS when idle)", 1, "gonet",
		func(s *summary) float64 { return s.CPUVsGo }, func(s *summary) float64 { return s.RSSVsGo })
	worst("at most 1.00 × gnet's in every scenario (CPU per operation; RSS when idle)", 1, "gnet",
		func(s *summary) float64 { return s.CPUVsGnet }, func(s *summary) float64 { return s.RSSVsGnet })
	if s := get("pingpong1000"); s != nil {
		gs = append(gs, goal{"server CPU per round trip at 1000 connections at most 0.9 of Go net's",
			fmt.Sprintf("pingpong1000 %.2f", s.CPUVsGo), verdict(s.CPUVsGo, 0.9)})
	}
	if s := get("idle"); s != nil {
		gs = append(gs, goal{"at most 0.25 KiB of RSS per idle connection",
			fmt.Sprintf("%.3f KiB", s.RSSPerConn), verdict(s.RSSPerConn, 0.25)})
	}
	return gs
}

// goalsText is a line a goal, its verdict first, for the terminal.
func goalsText(gs []goal) string {
	var b strings.Builder
	for _, g := range gs {
		fmt.Fprintf(&b, "%-16s %s: %s\n", g.Verdict, g.Text, g.Figures)
	}
	return b.String()
}

// goalsMarkdown is the goals' table for the page; nothing when there are none.
func goalsMarkdown(gs []goal) string {
	if len(gs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| goal | measured | verdict |\n|---|---|---|\n")
	for _, g := range gs {
		fmt.Fprintf(&b, "| %s | %s | **%s** |\n", g.Text, g.Figures, g.Verdict)
	}
	return b.String() + "\n"
}

// roundRatios is the lowest and highest of a's server CPU per operation over b's, round by
// round, in one scenario.
func (r *report) roundRatios(scen, a, b string) (lo, hi float64, ok bool) {
	as, bs := r.Runs[scen][a], r.Runs[scen][b]
	lo, hi = math.Inf(1), math.Inf(-1)
	for i := range min(len(as), len(bs)) {
		if v := ratio(as[i].CPUPerOp, bs[i].CPUPerOp); !math.IsNaN(v) {
			lo, hi, ok = min(lo, v), max(hi, v), true
		}
	}
	return lo, hi, ok
}

func scenarioByKey(k string) scenario {
	i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.key == k })
	return scenarios[i]
}

func num(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := fmt.Sprintf("%.*f", prec, v)
	// Thousands separators for the integer part.
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

func rateFmt(sc scenario, v float64) string {
	if sc.key == "bulk" {
		return num(v, 0) + " MB/s"
	}
	return num(v, 0) + "/s"
}

func ratioFmt(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// rows are the tables' cells, shared by the terminal and the page.
func (r *report) rows(cfg *config) (timed, idle [][]string) {
	for _, sc := range cfg.scenarios {
		for _, name := range cfg.servers {
			s := r.find(sc.key, name)
			if sc.key == "idle" {
				held := num(s.Held, 0)
				if s.Held < float64(s.Target) {
					held += " of " + num(float64(s.Target), 0)
				}
				idle = append(idle, []string{label(name), held, num(s.RSSPerConn, 3), ratioFmt(s.RSSVsGo),
					ratioFmt(s.RSSVsGnet), num(s.FDsPerConn, 1), num(s.CPUPerOp, 1)})
				continue
			}
			p50, p99 := num(s.P50, 0), num(s.P99, 0)
			if sc.key == "bulk" {
				p50, p99 = "–", "–"
			}
			timed = append(timed, []string{sc.title, label(name), rateFmt(sc, s.Rate), ratioFmt(s.RateVsGo),
				p50, p99, num(s.CPUPerOp, 2), ratioFmt(s.CPUVsC), ratioFmt(s.CPUVsGo), ratioFmt(s.CPUVsGnet), num(s.TotalPerOp, 2), ratioFmt(s.TotalVsGo), num(s.RWPerOp, 2), num(s.SwitchPerOp, 2)})
		}
	}
	return timed, idle
}

var (
	timedHead = []string{"scenario", "server", "rate", "× Go net", "p50 µs", "p99 µs", "server CPU µs/op", "× C", "× Go net", "× gnet", "server+client CPU µs/op", "× Go net", "read+write calls/op", "context switches/op"}
	idleHead  = []string{"server", "connections held", "RSS KiB/conn", "× Go net", "× gnet", "descriptors/conn", "server CPU µs/conn"}
)

// format is how a report is written down: plain text for the terminal, or Markdown for the
// page. Both are made from the same rows, so the two cannot tell different figures.
type format struct {
	markdown bool                                        // for chapters/performance.md
	table    func(head []string, rows [][]string) string // textTable or markdownTable
	goals    func([]goal) string                         // goalsText or goalsMarkdown
}

var (
	plain    = format{table: textTable, goals: goalsText}
	markdown = format{markdown: true, table: markdownTable, goals: goalsMarkdown}
)

// note is a sentence about how the figures were made: in italics on the page.
func (f format) note(s string) string {
	if f.markdown {
		return "*" + s + "*\n\n"
	}
	return s + "\n\n"
}

// caption introduces the table that follows it.
func (f format) caption(s string) string {
	if f.markdown {
		return s + "\n\n"
	}
	return s + "\n"
}

// write is the echo servers' report in format f, and on the terminal the Redis-protocol
// servers' after it (the page has a section for each).
func (r *report) write(cfg *config, f format) string {
	var b strings.Builder
	timed, idle := r.rows(cfg)
	b.WriteString(f.note(r.machineLine()))
	if len(timed) > 0 {
		b.WriteString(f.table(timedHead, timed))
	}
	if len(idle) > 0 {
		b.WriteString(f.caption(fmt.Sprintf("Idle, %s connections asked for:", num(float64(cfg.idleConns), 0))))
		b.WriteString(f.table(idleHead, idle))
	}
	if f.markdown && cfg.svg != "" {
		fmt.Fprintf(&b, "![Server CPU per operation and throughput relative to Go net, and RSS per idle connection](%s)\n\n", r.svgLink(cfg))
	}
	b.WriteString(f.goals(r.Goals))
	if !f.markdown && len(cfg.redisScenarios) > 0 {
		b.WriteString("\n" + r.redisReport(cfg, f))
	}
	return b.String()
}

// textTable lines the cells up for a terminal: the first two columns to the left, the
// figures to the right.
func textTable(head []string, rows [][]string) string {
	var b strings.Builder
	w := make([]int, len(head))
	for _, row := range append([][]string{head}, rows...) {
		for i, c := range row {
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	for _, row := range append([][]string{head}, rows...) {
		for i, c := range row {
			pad := strings.Repeat(" ", w[i]-len([]rune(c)))
			if i < 2 {
				b.WriteString(c + pad + "  ")
			} else {
				b.WriteString(pad + c + "  ")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.String()
}

func (r *report) machineLine() string {
	m, c := r.Machine, r.Config
	return fmt.Sprintf("Linux %s, %d CPUs (%s), %s, %s; refserver at %s; load average %s at the start, %s at the end; "+
		"%d rounds of %s (+%s warm-up) per server and scenario, in alternation, medians; GOMAXPROCS %d for every server, %d event loops for gnet and refserver; network namespace: %s, ip_local_port_range %s; %s in all.",
		m.Kernel, m.CPUs, m.CPUModel, m.Go, m.Date, m.Refserver, m.LoadStart, m.LoadEnd, c.Rounds, c.Duration, c.Warmup, c.Procs, c.Procs, c.Netns, c.PortRange, m.Elapsed)
}

// markdownTable is a table for the page, the figures' columns aligned right.
func markdownTable(head []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for i := range head {
		if i < 2 {
			b.WriteString("---|")
		} else {
			b.WriteString("--:|")
		}
	}
	b.WriteString("\n")
	for _, row := range rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	b.WriteString("\n")
	return b.String()
}

// svgLink is the chart's path relative to the page.
func (r *report) svgLink(cfg *config) string {
	rel, err := relPath(cfg.page, cfg.svg)
	if err != nil {
		return cfg.svg
	}
	return rel
}

const (
	benchStart = "<!-- bench:start: generated by make bench; edit the page around this section, not inside it -->"
	benchEnd   = "<!-- bench:end -->"
)

// writePage replaces the page's generated sections of the scenarios that ran (the echo
// servers', the Redis-protocol servers'), keeping the prose around them.
func (r *report) writePage(cfg *config) error {
	if len(cfg.scenarios) > 0 {
		if err := page.ReplaceSection(cfg.page, benchStart, benchEnd, r.write(cfg, markdown)); err != nil {
			return err
		}
	}
	if len(cfg.redisScenarios) > 0 {
		return r.writeRedisPage(cfg)
	}
	return nil
}
