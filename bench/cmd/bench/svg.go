package main

import (
	"fmt"
	"html"
	"math"
	"path/filepath"
	"strings"
)

var serverColors = map[string]string{"gonet": "#8a8f98", "gnet": "#3b7dd8", "refserver": "#e8590c", "refserver-splice": "#f5b041", "c-epoll": "#2f9e44"}

func color(name string) string {
	if c := serverColors[name]; c != "" {
		return c
	}
	return "#7b3fb0"
}

// svg draws four panels: server CPU per operation relative to Go net, server and load
// generator CPU per operation relative to Go net, throughput relative to Go net (all three
// per timed scenario), and RSS per idle connection.
func (r *report) svg(cfg *config) string {
	const width, left, right, barH, gap = 760, 250, 70, 12, 10
	var b strings.Builder
	y := 0
	var body strings.Builder
	text := func(x, y int, anchor, weight, s string, size int) {
		// A white halo keeps a value readable where it crosses the reference line.
		fmt.Fprintf(&body, `<text x="%d" y="%d" text-anchor="%s" font-weight="%s" font-size="%d" stroke="#fff" stroke-width="3" paint-order="stroke">%s</text>`+"\n",
			x, y, anchor, weight, size, html.EscapeString(s))
	}
	// legend
	y += 20
	x := left
	for _, name := range cfg.servers {
		fmt.Fprintf(&body, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", x, y-10, color(name))
		text(x+16, y, "start", "normal", label(name), 12)
		x += 110
	}
	y += 14
	var timed []scenario
	for _, sc := range cfg.scenarios {
		if sc.key != "idle" {
			timed = append(timed, sc)
		}
	}
	// panel draws one bar per server and scenario, and a dashed line at ref (0: none).
	panel := func(title string, rows []scenario, value func(*summary) float64, unit string, ref float64, refLabel string) {
		y += 26
		text(10, y, "start", "bold", title, 13)
		y += 10
		maxV := 0.0
		for _, sc := range rows {
			for _, name := range cfg.servers {
				if s := r.find(sc.key, name); s != nil && !math.IsNaN(value(s)) {
					maxV = max(maxV, value(s))
				}
			}
		}
		maxV = max(maxV, ref*1.2)
		if maxV == 0 {
			maxV = 1
		}
		scale := float64(width-left-right) / maxV
		top := y
		for _, sc := range rows {
			label := sc.title
			if sc.key == "idle" {
				label = fmt.Sprintf("idle, %s connections", num(float64(cfg.idleConns), 0))
			}
			y += gap
			text(left-8, y+len(cfg.servers)*barH/2+4, "end", "normal", label, 12)
			for _, name := range cfg.servers {
				s := r.find(sc.key, name)
				v := math.NaN()
				if s != nil {
					v = value(s)
				}
				if !math.IsNaN(v) {
					w := int(math.Round(v * scale))
					fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, max(w, 1), barH-2, color(name))
					text(left+w+4, y+barH-3, "start", "normal", fmt.Sprintf("%.2f%s", v, unit), 10)
				}
				y += barH
			}
		}
		if ref > 0 {
			x := left + int(math.Round(ref*scale))
			fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333" stroke-dasharray="4 3"/>`+"\n", x, top+4, x, y+4)
			anchor := "middle"
			if x-left < 40 {
				anchor = "start"
			}
			text(x, y+16, anchor, "normal", refLabel, 10)
			y += 12
		}
		fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", left, top+4, left, y+4)
		y += 6
	}
	if len(timed) > 0 {
		panel("Server CPU per operation, relative to Go net (lower is better)", timed, func(s *summary) float64 { return s.CPUVsGo }, "×", 1, "Go net = 1")
		panel("Server and load generator CPU per operation, relative to Go net (lower is better)", timed, func(s *summary) float64 { return s.TotalVsGo }, "×", 1, "Go net = 1")
		panel("Throughput, relative to Go net (higher is better)", timed, func(s *summary) float64 { return s.RateVsGo }, "×", 1, "Go net = 1")
	}
	if r.find("idle", cfg.servers[0]) != nil {
		panel("Server RSS per idle connection, KiB (lower is better)", []scenario{scenarioByKey("idle")}, func(s *summary) float64 { return s.RSSPerConn }, " KiB", 0.25, "goal: 0.25 KiB")
	}
	y += 10
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" fill="#222">`+"\n", width, y, width, y)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", width, y)
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}

func relPath(page, target string) (string, error) {
	pa, err := filepath.Abs(filepath.Dir(page))
	if err != nil {
		return "", err
	}
	ta, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	return filepath.Rel(pa, ta)
}
