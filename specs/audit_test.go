//go:build linux

package specs

import (
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"
)

// The suite's own rules are checked on reports made up for the purpose: each rule must be
// able to fail, or it proves nothing.
func TestAuditReport(t *testing.T) {
	it := func(state types.SpecState, entries int, labels ...string) types.SpecReport {
		s := types.SpecReport{LeafNodeType: types.NodeTypeIt, LeafNodeText: "a proof", State: state,
			LeafNodeLabels: labels}
		for range entries {
			s.ReportEntries = append(s.ReportEntries, types.ReportEntry{Name: "errno"})
		}
		return s
	}
	everyClaim := func(extra ...types.SpecReport) types.Report {
		var r types.Report
		for _, c := range Claims {
			r.SpecReports = append(r.SpecReports, it(types.SpecStatePassed, 1, c.Label()))
		}
		r.SpecReports = append(r.SpecReports, extra...)
		return r
	}
	// labelled is r as a run with -ginkgo.label-filter makes it; skipped is a spec that
	// called Skip, which records where and why.
	labelled := func(r types.Report) types.Report {
		r.SuiteConfig.LabelFilter = "chapter:1"
		return r
	}
	skipped := func(labels ...string) types.SpecReport {
		s := it(types.SpecStateSkipped, 0, labels...)
		s.Failure = types.Failure{Message: "no sandbox here", Location: types.NewCodeLocation(0)}
		return s
	}
	cases := []struct {
		name   string
		report types.Report
		ci     bool
		want   string // a problem containing this, or "" for none
	}{
		{"every claim proven with evidence", everyClaim(), true, ""},
		{"a claim spec without evidence", everyClaim(it(types.SpecStatePassed, 0, Claims[0].Label())), false, "attached no evidence"},
		{"a spec that proves no claim needs none", everyClaim(it(types.SpecStatePassed, 0, "registry")), false, ""},
		{"an unregistered claim", everyClaim(it(types.SpecStatePassed, 1, "claim:no.such")), false, "does not register"},
		{"a skip under CI", everyClaim(it(types.SpecStateSkipped, 0, Claims[0].Label())), true, "CI never skips"},
		{"a skip elsewhere", everyClaim(it(types.SpecStateSkipped, 0, Claims[0].Label())), false, ""},
		{"a claim left unproven", types.Report{SpecReports: everyClaim().SpecReports[1:]}, false, "has no passing spec"},
		{"a spec a label filter left out, under CI", labelled(everyClaim(it(types.SpecStateSkipped, 0, Claims[0].Label()))), true, ""},
		{"a Skip under CI in a filtered run", labelled(everyClaim(skipped(Claims[0].Label()))), true, "CI never skips"},
	}
	for _, c := range cases {
		problems := auditReport(c.report, c.ci)
		joined := strings.Join(problems, "\n")
		switch {
		case c.want == "" && len(problems) > 0:
			t.Errorf("%s: want no problem, got:\n%s", c.name, joined)
		case c.want != "" && !strings.Contains(joined, c.want):
			t.Errorf("%s: want a problem saying %q, got:\n%s", c.name, c.want, joined)
		}
	}
}
