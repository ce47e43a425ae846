package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"portproof/specs"
)

// The parts of Ginkgo's JSON report (reporters.GenerateJSONReport) that the page shows. Kept
// here rather than imported so that the generator reads any report of that shape, and a
// field Ginkgo adds later changes nothing.
type suiteReport struct {
	SuitePath                  string
	SuiteDescription           string
	SuiteSucceeded             bool
	SpecialSuiteFailureReasons []string
	StartTime                  time.Time
	RunTime                    time.Duration
	SpecReports                []specReport
}

type specReport struct {
	ContainerHierarchyTexts []string
	LeafNodeType            string
	LeafNodeLocation        location
	LeafNodeLabels          []string
	LeafNodeText            string
	State                   string
	RunTime                 time.Duration
	Failure                 struct{ Message string }
	ReportEntries           []reportEntry
}

type location struct {
	FileName   string
	LineNumber int
}

type reportEntry struct {
	Name  string
	Value struct{ AsJSON string }
}

// claimIDs are the claims a spec proves, from its claim:<id> labels.
func (s specReport) claimIDs() []string {
	var ids []string
	for _, l := range s.LeafNodeLabels {
		if id, ok := strings.CutPrefix(l, "claim:"); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// family is the spec's address family label ("ipv4", "ipv6"), or "".
func (s specReport) family() string {
	for _, l := range s.LeafNodeLabels {
		if l == "ipv4" || l == "ipv6" {
			return l
		}
	}
	return ""
}

// passed are p's passed specs in the order the pictures try them: those with no family
// label, then IPv4's, whose addresses are the shorter to read, then IPv6's.
func (p proof) passed() []specReport {
	var out []specReport
	for _, s := range p.Specs {
		if s.State == "passed" {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b specReport) int {
		return strings.Compare(a.family(), b.family()) // "" < "ipv4" < "ipv6"
	})
	return out
}

// entries are the spec's report entries named name, in the order recorded.
func (s specReport) entries(name string) []reportEntry {
	var es []reportEntry
	for _, e := range s.ReportEntries {
		if e.Name == name {
			es = append(es, e)
		}
	}
	return es
}

// decode unmarshals the entry's value into v.
func (e reportEntry) decode(v any) error {
	return json.Unmarshal([]byte(e.Value.AsJSON), v)
}

// loadReport reads the report; Ginkgo writes one suite report per suite, in a JSON array.
func loadReport(path string) (suiteReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return suiteReport{}, fmt.Errorf("%w (run the proofs first: go test ./specs/)", err)
	}
	var suites []suiteReport
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&suites); err != nil {
		return suiteReport{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(suites) != 1 {
		return suiteReport{}, fmt.Errorf("%s: want the report of one suite, found %d", path, len(suites))
	}
	return suites[0], nil
}

// proof is a claim with the specs that prove it.
type proof struct {
	specs.Claim
	Specs []specReport
}

// State sums up the claim's specs: "passed" when at least one ran and every one passed,
// "missing" when none carries its label, else the first state that is not "passed".
func (p proof) State() string {
	if len(p.Specs) == 0 {
		return "missing"
	}
	for _, s := range p.Specs {
		if s.State != "passed" {
			return s.State
		}
	}
	return "passed"
}

// Anchor is the claim's id on the proof page, as the chapters link to it and as the spec
// files name its region: the id with its dot replaced by a dash.
func anchor(id string) string { return strings.ReplaceAll(id, ".", "-") }

// proofs pairs every registered claim with its specs, in the registry's order, and lists
// the specs whose claim:<id> the registry does not know.
func proofs(r suiteReport) (ps []proof, unknown []specReport) {
	byID := map[string]int{}
	for _, c := range specs.Claims {
		byID[c.ID] = len(ps)
		ps = append(ps, proof{Claim: c})
	}
	for _, s := range r.SpecReports {
		if s.LeafNodeType != "It" {
			continue
		}
		for _, id := range s.claimIDs() {
			i, ok := byID[id]
			if !ok {
				unknown = append(unknown, s)
				continue
			}
			ps[i].Specs = append(ps[i].Specs, s)
		}
	}
	return ps, unknown
}

// relPath makes a spec's file name relative to the repository (the directory above the
// suite's that holds go.mod), as a reader finds it in a clone.
func relPath(suitePath, file string) string {
	root := filepath.Dir(suitePath)
	for dir := suitePath; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			root = dir
			break
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	if rel, err := filepath.Rel(root, file); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.ToSlash(rel)
	}
	return filepath.ToSlash(file)
}
