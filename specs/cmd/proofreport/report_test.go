package main

import (
	"slices"
	"testing"
)

// TestProofPassed: the pictures try a proof's passed specs in one order, IPv4's before IPv6's
// whatever order the report has them in, and never a failed one.
func TestProofPassed(t *testing.T) {
	spec := func(text, state string, labels ...string) specReport {
		return specReport{LeafNodeText: text, State: state, LeafNodeLabels: labels}
	}
	p := proof{Specs: []specReport{
		spec("v6", "passed", "claim:x", "ipv6"),
		spec("v4 failed", "failed", "claim:x", "ipv4"),
		spec("v4", "passed", "claim:x", "ipv4"),
		spec("no family", "passed", "claim:x"),
		spec("v6 again", "passed", "ipv6", "claim:x"),
	}}
	var got []string
	for _, s := range p.passed() {
		got = append(got, s.LeafNodeText)
	}
	if want := []string{"no family", "v4", "v6", "v6 again"}; !slices.Equal(got, want) {
		t.Errorf("passed: %q, want %q", got, want)
	}
}
