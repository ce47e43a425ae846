package main

import (
	"fmt"
	"slices"

	"portproof/specs/evidence"
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
	if b, err := fromSpecs(byID["tuple.identity"], evidence.EntryTuples, func(e reportEntry) ([]byte, error) {
		var conns []evidence.TupleSeen
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

	// One port: port.same's listener and accepted sockets, IPv4 first.
	onePortPicture(byID["port.same"], pics, missing)

	// The handshake, to scale in time: handshake.before-accept's segments and calls.
	if pic, why := handshakeFigure(byID["handshake.before-accept"]); why == "" {
		pics["handshake.svg"] = pic
	} else {
		pics["handshake.svg"], missing["handshake.svg"] = pic, why
	}

	// The port space and limit.per-destination's ports; limit.multiply's batches apart
	// (pictures_ports.go).
	portPictures(r, byID, pics, missing)

	// The accept queue: backlog.queue's queue as clients join it, backlog.size's listeners
	// filled to backlog+1.
	var q *evidence.QueueSeen
	var clients []evidence.ClientState
	var bq evidence.QueueSeen
	if decodeFirst(byID["backlog.queue"], evidence.EntryBacklogQueue, &bq) {
		q = &bq
		decodeFirst(byID["backlog.queue"], evidence.EntryBacklogStates, &clients)
	}
	var fills []evidence.Fill
	decodeFirst(byID["backlog.size"], evidence.EntryBacklogFill, &fills)
	if b, err := acceptQueuePicture(q, clients, fills); err == nil {
		pics["accept-queue.svg"] = b
	} else {
		why := "backlog.queue and backlog.size recorded no accept queue in this run (" + err.Error() + ")."
		pics["accept-queue.svg"], missing["accept-queue.svg"] = placeholder("The accept queue", why), why
	}

	// A connect() to a full queue: backlog.full's story and its packets, when it could capture.
	full := byID["backlog.full"]
	var o evidence.Overflow
	var packets []evidence.OverflowPacket
	var counters *evidence.CountersSeen
	var err error
	switch {
	case !decodeFirst(full, evidence.EntryBacklogOverflow, &o):
		err = fmt.Errorf("no %s evidence", evidence.EntryBacklogOverflow)
	case !decodeFirst(full, evidence.EntryBacklogPackets, &packets):
		err = fmt.Errorf("no %s evidence", evidence.EntryBacklogPackets)
	default:
		var c evidence.CountersSeen
		if decodeFirst(full, evidence.EntryBacklogCounters, &c) {
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

	// Chapter 6: the passive socket and its active ones; an SO_REUSEPORT group's spread.
	ch6Pictures(byID, pics, missing)
	// Part II, chapters 7 and 8 (pictures_closing.go, pictures_queues.go).
	closingPictures(byID, pics, missing)
	queuesPictures(byID, pics, missing)
	// Part II, chapters 9 and 10 (pictures_ch9.go, pictures_ch10.go).
	dualStackPictures(byID, pics, missing)
	epollPictures(byID, pics, missing)
	// The server pages: the steps, and the loop (pictures_server.go).
	serverPictures(r, byID, pics, missing)
	loopPictures(byID, pics, missing)
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
	err := fmt.Errorf("no %q evidence", name)
	for _, s := range p.passed() {
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

// hostRange is ip_local_port_range as port.ephemeral read it, or else as the suite's machine
// entry recorded it when the run began.
func hostRange(r suiteReport) (low, high uint16) {
	for _, s := range r.SpecReports {
		if !slices.Contains(s.claimIDs(), "port.ephemeral") {
			continue
		}
		for _, e := range s.entries(evidence.EntryPortRange) {
			var pr evidence.PortRange
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
