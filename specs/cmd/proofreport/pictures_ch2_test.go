package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portproof/specs/evidence"
)

// portSameSpec is a passed port.same spec over family with n connections to port 7000, its
// accepted sockets on descriptors 9, 11, 13..., and server_sockets evidence when withFDs.
func portSameSpec(t *testing.T, family string, n int, withFDs bool) specReport {
	t.Helper()
	addr := map[string]string{"ipv4": "127.0.0.1", "ipv6": "[::1]"}[family]
	var conns []evidence.TupleSeen
	server := evidence.ServerSockets{
		Listener: evidence.ListeningSocket{FD: 7, Addr: addr + ":7000", State: "LISTEN"}}
	for i := range n {
		conn := fmt.Sprintf("connection %d", i+1)
		client := fmt.Sprintf("%s:%d", addr, 40000+2*i)
		conns = append(conns, evidence.TupleSeen{Conn: conn,
			Client: "tcp " + client + " -> " + addr + ":7000",
			Server: "tcp " + addr + ":7000 -> " + client})
		server.Accepted = append(server.Accepted,
			evidence.AcceptedSocket{Conn: conn, FD: 9 + 2*i, State: "ESTABLISHED"})
	}
	s := specReport{LeafNodeType: "It", LeafNodeLabels: []string{"claim:port.same", family},
		LeafNodeText: "gives every accepted socket the listener's own address and port, over " + family,
		State:        "passed"}
	add := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		e := reportEntry{Name: name}
		e.Value.AsJSON = string(b)
		s.ReportEntries = append(s.ReportEntries, e)
	}
	add(evidence.EntryTuples, conns)
	if withFDs {
		add(evidence.EntryServerSockets, server)
	}
	return s
}

// drawOnePort draws port-same.svg for p, checks it, and returns it with the page's note.
func drawOnePort(t *testing.T, p proof) (svg string, note string) {
	t.Helper()
	pics, missing := map[string][]byte{}, notes{}
	onePortPicture(p, pics, missing)
	path := filepath.Join(t.TempDir(), "port-same.svg")
	if err := os.WriteFile(path, pics["port-same.svg"], 0o644); err != nil {
		t.Fatal(err)
	}
	return checkSVG(t, path), missing["port-same.svg"]
}

func TestOnePortPictureShowsTheListenerAndEveryAcceptedSocket(t *testing.T) {
	p := proof{Specs: []specReport{portSameSpec(t, "ipv6", 3, true), portSameSpec(t, "ipv4", 3, true)}}
	svg, note := drawOnePort(t, p)
	if note != "" {
		t.Errorf("a note for a picture drawn from the evidence: %s", note)
	}
	checkHolds(t, "port-same.svg", svg,
		">fd 7<", ">LISTEN<", ">127.0.0.1:7000<", // the listener, IPv4 first
		">fd 9<", ">fd 11<", ">fd 13<", ">ESTABLISHED<",
		">127.0.0.1:40000<", ">127.0.0.1:40002<", ">127.0.0.1:40004<",
		"3 of 3 accepted sockets on 127.0.0.1:7000", "3 different client ports (orange), 40000 to 40004")
	if strings.Contains(svg, "[::1]") {
		t.Error("port-same.svg draws IPv6, though an IPv4 spec passed")
	}
}

func TestOnePortPictureShortensALongList(t *testing.T) {
	svg, _ := drawOnePort(t, proof{Specs: []specReport{portSameSpec(t, "ipv4", 40, true)}})
	checkHolds(t, "port-same.svg", svg, ">fd 9<", "… 25 more, the same way …", ">fd 87<", ">127.0.0.1:40078<",
		"40 of 40 accepted sockets", "40 different client ports")
	if strings.Contains(svg, ">fd 85<") {
		t.Error("port-same.svg draws a row it says it leaves out")
	}
}

func TestOnePortPictureWithoutDescriptorsStillDrawsThePorts(t *testing.T) {
	svg, _ := drawOnePort(t, proof{Specs: []specReport{portSameSpec(t, "ipv4", 2, false)}})
	checkHolds(t, "port-same.svg", svg, ">accepted<", ">127.0.0.1:7000<", ">127.0.0.1:40002<", "2 of 2 accepted sockets")
}

func TestOnePortPictureWithoutEvidenceIsAPlaceholder(t *testing.T) {
	failed := portSameSpec(t, "ipv4", 2, true)
	failed.State = "failed"
	svg, note := drawOnePort(t, proof{Specs: []specReport{failed}})
	if !strings.Contains(svg, "recorded no connections") || note == "" {
		t.Errorf("a failed spec: want the placeholder and a note, got note %q and\n%s", note, svg)
	}
	svg, note = drawOnePort(t, proof{})
	if !strings.Contains(svg, "recorded no connections") || note != "" {
		t.Errorf("no spec: want the placeholder and no note (the page says it), got note %q", note)
	}
}
