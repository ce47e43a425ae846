package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRedisSection: figures made up for three servers and one load become the medians, the
// ratios to redis-server and the goal's verdict, and land between the redis markers of a
// page, leaving the echo section and the prose as they were.
func TestRedisSection(t *testing.T) {
	cfg := &config{rounds: 3, redisServers: redisServerNames, redisScenarios: redisScenarios[:1]}
	rep := &report{RedisRuns: map[string]map[string][]redisRound{"redis50": {}}}
	for name, cpu := range map[string][]float64{"redis-server": {10, 11, 30}, "miniredis": {9, 10.45, 1}, "gonet-redis": {20, 22, 24}} {
		for _, c := range cpu {
			rr := redisRound{}
			for _, test := range append(redisTests, mix) {
				rr[test] = measure{Rate: 1000, CPUPerOp: c}
			}
			rep.RedisRuns["redis50"][name] = append(rep.RedisRuns["redis50"][name], rr)
		}
	}
	rep.summarizeRedis(cfg)
	if s := rep.findRedis("redis50", "miniredis", mix); s.CPUPerOp != 9 || s.CPUVsRedis != 9.0/11 {
		t.Fatalf("miniredis: median %v, × redis-server %v; want 9 and 9/11", s.CPUPerOp, s.CPUVsRedis)
	}
	if len(rep.RedisGoals) != 1 || rep.RedisGoals[0].Verdict != "holds" || !strings.HasPrefix(rep.RedisGoals[0].Figures, "0.82 × redis-server") {
		t.Fatalf("goals: %+v", rep.RedisGoals)
	}

	page := filepath.Join(t.TempDir(), "page.md")
	before := "prose\n" + benchStart + "\nechoes\n" + benchEnd + "\nmore prose\n" + redisStart + "\nold\n" + redisEnd + "\nthe end\n"
	os.WriteFile(page, []byte(before), 0o644)
	cfg.page = page
	if err := rep.writePage(cfg); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(page)
	got := string(b)
	for _, want := range []string{"prose\n" + benchStart + "\nechoes\n" + benchEnd + "\nmore prose\n", "| -c 50 | miniredis | 1,000 | 1.00 | 9.00 | 0.82 |", "**holds**", redisEnd + "\nthe end\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("the page lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\nold\n") {
		t.Errorf("the old section is still there:\n%s", got)
	}
}

// TestReadyLines: the address in each server's announcement.
func TestReadyLines(t *testing.T) {
	if a, ok := listening("listening on 127.0.0.1:4242 (pid 7, GOMAXPROCS 2)"); !ok || a != "127.0.0.1:4242" {
		t.Errorf("listening: %q, %v", a, ok)
	}
	if _, ok := listening("listening on "); ok {
		t.Error("listening: an address in an empty line")
	}
	if a, ok := miniredisReady("miniredis: ready on 127.0.0.1:6380; try: redis-cli -h 127.0.0.1 -p 6380 ping"); !ok || a != "127.0.0.1:6380" {
		t.Errorf("miniredis: %q, %v", a, ok)
	}
	if _, ok := miniredisReady("miniredis: listen(5, 4096) = 0"); ok {
		t.Error("miniredis: ready before it is")
	}
}
