package main

import (
	"fmt"
	"math"
	"strings"

	"portproof/bench/internal/page"
)

// redisSummary is the medians of one scenario, server and test (or the mix of the four)
// over the rounds, and their ratios to redis-server's.
type redisSummary struct {
	Scenario string `json:"scenario"`
	Server   string `json:"server"`
	Test     string `json:"test"`
	medians
	RateVsRedis  float64 `json:"rate_vs_redis"`
	CPUVsRedis   float64 `json:"cpu_vs_redis"`
	TotalVsRedis float64 `json:"total_vs_redis"`
}

func (r *report) findRedis(scen, server, test string) *redisSummary {
	for i := range r.RedisSummary {
		if s := &r.RedisSummary[i]; s.Scenario == scen && s.Server == server && s.Test == test {
			return s
		}
	}
	return nil
}

func (r *report) summarizeRedis(cfg *config) {
	for _, sc := range cfg.redisScenarios {
		for _, name := range cfg.redisServers {
			rounds := r.RedisRuns[sc.key][name]
			for _, test := range append(redisTests[:len(redisTests):len(redisTests)], mix) {
				var ms []measure
				for _, rr := range rounds {
					if m, ok := rr[test]; ok {
						ms = append(ms, m)
					}
				}
				s := redisSummary{Scenario: sc.key, Server: name, Test: test, medians: mediansOf(ms)}
				if test == mix {
					s.P50, s.P99 = math.NaN(), math.NaN()
				}
				r.RedisSummary = append(r.RedisSummary, s)
			}
		}
	}
	for i := range r.RedisSummary {
		s := &r.RedisSummary[i]
		s.RateVsRedis, s.CPUVsRedis, s.TotalVsRedis = math.NaN(), math.NaN(), math.NaN()
		if b := r.findRedis(s.Scenario, "redis-server", s.Test); b != nil {
			s.RateVsRedis, s.CPUVsRedis, s.TotalVsRedis = ratio(s.Rate, b.Rate), ratio(s.CPUPerOp, b.CPUPerOp), ratio(s.TotalPerOp, b.TotalPerOp)
		}
	}
	r.RedisGoals = nil
	for _, sc := range cfg.redisScenarios {
		s := r.findRedis(sc.key, "miniredis", mix)
		if s == nil {
			continue
		}
		var per []string
		for _, t := range redisTests {
			per = append(per, fmt.Sprintf("%s %s", t, ratioFmt(r.findRedis(sc.key, "miniredis", t).CPUVsRedis)))
		}
		r.RedisGoals = append(r.RedisGoals, goal{
			fmt.Sprintf("miniredis's server CPU per request at most 1.00 × redis-server's, at %s", sc.title),
			fmt.Sprintf("%s × redis-server (%s)", ratioFmt(s.CPUVsRedis), strings.Join(per, ", ")),
			verdict(s.CPUVsRedis, 1)})
	}
}

var redisMixHead = []string{"load", "server", "requests/s", "× redis-server", "server CPU µs/request", "× redis-server",
	"server+client CPU µs/request", "× redis-server", "read+write calls/request", "context switches/request"}

// redisRows are the two tables' cells: the mix per load and server, long; and each test per
// load, the servers side by side.
func (r *report) redisRows(cfg *config) (head []string, mixRows, testRows [][]string) {
	for _, sc := range cfg.redisScenarios {
		for _, name := range cfg.redisServers {
			s := r.findRedis(sc.key, name, mix)
			mixRows = append(mixRows, []string{sc.title, label(name), num(s.Rate, 0), ratioFmt(s.RateVsRedis),
				num(s.CPUPerOp, 2), ratioFmt(s.CPUVsRedis), num(s.TotalPerOp, 2), ratioFmt(s.TotalVsRedis),
				num(s.RWPerOp, 2), num(s.SwitchPerOp, 2)})
		}
	}
	head = []string{"load", "command"}
	for _, name := range cfg.redisServers {
		head = append(head, label(name)+": requests/s")
	}
	for _, name := range cfg.redisServers {
		head = append(head, label(name)+": server CPU µs/request")
	}
	for _, name := range cfg.redisServers {
		if name != "redis-server" {
			head = append(head, label(name)+": CPU × redis-server")
		}
	}
	for _, sc := range cfg.redisScenarios {
		for _, test := range redisTests {
			row := []string{sc.title, test}
			for _, name := range cfg.redisServers {
				row = append(row, num(r.findRedis(sc.key, name, test).Rate, 0))
			}
			for _, name := range cfg.redisServers {
				row = append(row, num(r.findRedis(sc.key, name, test).CPUPerOp, 2))
			}
			for _, name := range cfg.redisServers {
				if name != "redis-server" {
					row = append(row, ratioFmt(r.findRedis(sc.key, name, test).CPUVsRedis))
				}
			}
			testRows = append(testRows, row)
		}
	}
	return head, mixRows, testRows
}

// redisLine says what ran: the versions, redis-server's io-threads as it reads them back,
// and how a measured run is sized.
func (r *report) redisLine() string {
	c := r.Config
	io := c.Redis.IOThreads
	if io == "" {
		io = "?"
	}
	srv := c.Redis.Server
	if srv == "" {
		srv = "not run"
	}
	return fmt.Sprintf("redis-server: %s, io-threads %s (CONFIG GET); %s; a fresh server per load, round and server, and on it, in the first round, a short run of `redis-benchmark -t ping,set,get` for the rates (then the previous round's), "+
		"a warm-up of %s and a measured run of %s's worth of requests (-n) at the warm-up's rates; server CPU over the whole measured invocation, its clients' connecting and closing included, per request; "+
		"a test's share read as its line comes out; rounds: %d, medians.",
		srv, io, c.Redis.Benchmark, c.Warmup, c.Duration, c.Rounds)
}

// redisReport is the Redis-protocol servers' report in format f; on the page it says again
// which machine ran it, as its section stands apart from the echo servers'.
func (r *report) redisReport(cfg *config, f format) string {
	var b strings.Builder
	head, mixRows, testRows := r.redisRows(cfg)
	if f.markdown {
		b.WriteString(f.note(r.machineLine()))
	}
	b.WriteString(f.note(r.redisLine()))
	b.WriteString(f.caption(fmt.Sprintf("`redis-benchmark -t %s`, the four tests together (as many requests of each):", mix)))
	b.WriteString(f.table(redisMixHead, mixRows))
	b.WriteString(f.caption("Each test:"))
	b.WriteString(f.table(head, testRows))
	b.WriteString(f.goals(r.RedisGoals))
	return b.String()
}

const (
	redisStart = "<!-- redis:start: generated by make bench; edit the page around this section, not inside it -->"
	redisEnd   = "<!-- redis:end -->"
)

func (r *report) writeRedisPage(cfg *config) error {
	return page.ReplaceSection(cfg.page, redisStart, redisEnd, r.redisReport(cfg, markdown))
}
