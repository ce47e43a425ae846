package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pictures draws every picture the chapters show, from the proofs' evidence. Each is always
// written, so that a chapter's image never points nowhere: when a run did not produce the
// evidence, the picture says so, and missing says why for the page.
func pictures(r suiteReport, ps []proof) (map[string][]byte, notes) {
	pics := map[string][]byte{}
	missing := notes{}
	byID := map[string]proof{}
	for _, p := range ps {
		byID[p.ID] = p
	}

	// The 5-tuple: tuple.identity's connections, IPv4 first (the shorter addresses).
	if b, err := fromSpecs(byID["tuple.identity"], "tuples", func(e reportEntry) ([]byte, error) {
		var conns []tupleSeen
		if err := e.decode(&conns); err != nil {
			return nil, err
		}
		return tuplePicture(conns)
	}); err == nil {
		pics["tuple-identity.svg"] = b
	} else {
		why := "tuple.identity recorded no connections in this run (" + err.Error() + ")."
		pics["tuple-identity.svg"], missing["tuple-identity.svg"] = placeholder("The 5-tuple of two connections", why), why
	}

	// The handshake: handshake.before-accept's captured segments, when it could capture.
	if b, err := fromSpecs(byID["handshake.before-accept"], "packets", func(e reportEntry) ([]byte, error) {
		segs, err := decodeSegments(e)
		if err != nil {
			return nil, err
		}
		if len(segs) == 0 {
			return nil, fmt.Errorf("the capture is empty")
		}
		return handshakePicture(segs, acceptAt(byID["handshake.before-accept"], segs[0].Time))
	}); err == nil {
		pics["handshake.svg"] = b
	} else {
		why := "handshake.before-accept captured no packets in this run (" + err.Error() + "): " +
			"capture needs a private network namespace, which root or an unprivileged user namespace gives."
		if len(byID["handshake.before-accept"].Specs) == 0 {
			why = "handshake.before-accept has no spec in this report yet, so no packets to draw."
		}
		pics["handshake.svg"], missing["handshake.svg"] = placeholder("The handshake, packet by packet", why), why
	}

	// The port space: the host's range, and what the limit.* proofs spent per destination.
	low, high := hostRange(r)
	narrowed, dests := destinations(byID["limit.per-destination"], byID["limit.multiply"])
	pics["port-space.svg"] = portSpacePicture(low, high, narrowed, dests)
	if len(dests) == 0 {
		missing["port-space.svg"] = "The limit.* proofs recorded no ports per destination in this run: " +
			"the picture shows the range alone."
	}

	// The accept queue: backlog.queue's queue as clients join it, backlog.size's listeners
	// filled to backlog+1.
	var q *backlogQueue
	var clients []backlogClient
	var bq backlogQueue
	if decodeFirst(byID["backlog.queue"], "backlog_queue", &bq) {
		q = &bq
		decodeFirst(byID["backlog.queue"], "backlog_client_states", &clients)
	}
	var fills []backlogFill
	decodeFirst(byID["backlog.size"], "backlog_fill", &fills)
	if b, err := acceptQueuePicture(q, clients, fills); err == nil {
		pics["accept-queue.svg"] = b
	} else {
		why := "backlog.queue and backlog.size recorded no accept queue in this run (" + err.Error() + ")."
		pics["accept-queue.svg"], missing["accept-queue.svg"] = placeholder("The accept queue", why), why
	}

	// A connect() to a full queue: backlog.full's story and its packets, when it could capture.
	full := byID["backlog.full"]
	var o backlogOverflow
	var packets []backlogPacket
	var counters *backlogCounters
	var err error
	switch {
	case !decodeFirst(full, "backlog_overflow", &o):
		err = fmt.Errorf("no backlog_overflow evidence")
	case !decodeFirst(full, "backlog_packets", &packets):
		err = fmt.Errorf("no backlog_packets evidence")
	default:
		var c backlogCounters
		if decodeFirst(full, "backlog_counters", &c) {
			counters = &c
		}
		var b []byte
		if b, err = overflowPicture(o, packets, counters); err == nil {
			pics["backlog-overflow.svg"] = b
		}
	}
	if err != nil {
		why := "backlog.full recorded no dropped SYN in this run (" + err.Error() + "): " +
			"it needs a private network namespace, which root or an unprivileged user namespace gives."
		pics["backlog-overflow.svg"], missing["backlog-overflow.svg"] = placeholder("A connect() to a full accept queue", why), why
	}

	// The primer's pictures (pictures_primer.go).
	primerPictures(byID, ps, pics)
	return pics, missing
}

// fromSpecs draws from the first entry named name of p's specs that draw works on, trying
// IPv4 specs first.
func fromSpecs(p proof, name string, draw func(reportEntry) ([]byte, error)) ([]byte, error) {
	if len(p.Specs) == 0 {
		return nil, fmt.Errorf("no spec")
	}
	ordered := slices.Clone(p.Specs)
	slices.SortStableFunc(ordered, func(a, b specReport) int {
		return strings.Compare(a.family(), b.family()) // "" < "ipv4" < "ipv6"
	})
	err := fmt.Errorf("no %q evidence", name)
	for _, s := range ordered {
		if s.State != "passed" {
			continue
		}
		for _, e := range s.entries(name) {
			b, derr := draw(e)
			if derr == nil {
				return b, nil
			}
			err = derr
		}
	}
	return nil, err
}

// acceptAt finds when accept() was called, in µs after the first captured segment (t0),
// from an entry of the proof named accept_at_us (or _ms, _ns), or an entry whose name
// mentions accept and holds a time. NaN when there is none.
func acceptAt(p proof, t0 time.Time) float64 {
	for _, s := range p.Specs {
		for _, e := range s.ReportEntries {
			if !strings.HasPrefix(e.Name, "accept_at") {
				continue
			}
			var t time.Time
			if e.decode(&t) == nil && !t.IsZero() && !t0.IsZero() {
				return float64(t.Sub(t0).Nanoseconds()) / 1e3
			}
			var n json.Number
			if e.decode(&n) != nil {
				continue
			}
			f, err := strconv.ParseFloat(n.String(), 64)
			if err != nil {
				continue
			}
			switch {
			case strings.HasSuffix(e.Name, "_ms"):
				f *= 1e3
			case strings.HasSuffix(e.Name, "_ns"):
				f /= 1e3
			}
			return f
		}
	}
	return math.NaN()
}

type portRange struct {
	Low  int `json:"low"`
	High int `json:"high"`
	Size int `json:"size"`
}

// hostRange is ip_local_port_range as port.ephemeral read it, or else as the suite's machine
// entry recorded it when the run began.
func hostRange(r suiteReport) (low, high int) {
	for _, s := range r.SpecReports {
		if !slices.Contains(s.claimIDs(), "port.ephemeral") {
			continue
		}
		for _, e := range s.entries("port_range") {
			var pr portRange
			if e.decode(&pr) == nil && pr.High > 0 {
				return pr.Low, pr.High
			}
		}
	}
	if m, err := machineOf(r); err == nil {
		if _, err := fmt.Sscan(m.Sysctls["net.ipv4.ip_local_port_range"], &low, &high); err == nil {
			return low, high
		}
	}
	return 0, 0
}

// destinations reads, from the limit proofs' evidence, the narrowed range's size and the
// source ports spent toward each destination: the "port_batches" chapter 3 records (one
// batch per destination, each with its ports), in the order the proofs ran them.
func destinations(ps ...proof) (narrowed int, dests []destination) {
	seen := map[string]bool{}
	for _, p := range ps {
		for _, s := range p.Specs {
			if s.family() == "ipv6" {
				continue
			}
			for _, e := range s.entries("port_range") {
				var pr portRange
				if e.decode(&pr) == nil && pr.Size > 0 && narrowed == 0 {
					narrowed = pr.Size
				}
			}
			for _, e := range s.entries("port_batches") {
				var batches []struct {
					Batch string   `json:"batch"`
					From  string   `json:"from"`
					To    string   `json:"to"`
					Ports []uint16 `json:"ports"`
				}
				if e.decode(&batches) != nil {
					continue
				}
				for _, b := range batches {
					label := b.Batch
					if label == "" {
						label = b.From + " → " + b.To
					}
					if seen[label] {
						continue
					}
					seen[label] = true
					dests = append(dests, destination{Label: label, Used: len(b.Ports)})
				}
			}
		}
	}
	if narrowed == 0 {
		for _, d := range dests {
			narrowed = max(narrowed, d.Used)
		}
	}
	return narrowed, dests
}
