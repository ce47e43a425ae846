//go:build linux

package specs

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/reporters"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"

	"portproof/internal/testkit"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

func TestMain(m *testing.M) {
	// A proof that needs a private network namespace re-executes this test binary as its
	// child; the child runs that proof and exits here, before any spec.
	lab.RunChildIfAsked()
	flag.Parse()
	if n := repeatCount(); n > 1 {
		os.Exit(repeatSuite(n))
	}
	os.Exit(m.Run())
}

// repeatCount is go test's -count. Ginkgo refuses to run a suite twice in one process (its
// global state is built once), so `go test -count=20 ./specs/...` would fail outright.
func repeatCount() int {
	f := flag.Lookup("test.count")
	if f == nil {
		return 1
	}
	n, err := strconv.Atoi(f.Value.String())
	if err != nil {
		return 1
	}
	return n
}

// repeatSuite runs the suite n times in a row, each in a fresh process (this binary again,
// with -test.count=1), and stops at the first failure: "passes 20 times in a row" means
// that every one of the 20 runs was green.
func repeatSuite(n int) int {
	var args []string
	for i := 1; i < len(os.Args); i++ {
		a := os.Args[i]
		switch {
		case a == "-test.count" || a == "--test.count":
			i++ // the value follows as its own argument
		case strings.HasPrefix(a, "-test.count=") || strings.HasPrefix(a, "--test.count="):
		default:
			args = append(args, a)
		}
	}
	args = append(args, "-test.count=1")
	for run := 1; run <= n; run++ {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = testkit.ChildEnv() // no -race binary's second of sleep at exit
		err := cmd.Run()
		fmt.Printf("suite run %d of %d: %s\n", run, n, map[bool]string{true: "passed", false: fmt.Sprint("failed: ", err)}[err == nil])
		if err != nil {
			return 1
		}
	}
	return 0
}

func TestSpecs(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "portproof: the article's claims, proven")
}

// The machine comes first in the report: every "on your machine" sentence of the chapters
// and the proof page's table of settings are written from it.
var _ = BeforeSuite(func() {
	m, err := lab.ReadMachine()
	Expect(err).NotTo(HaveOccurred(), "uname(2)")
	lab.Record(evidence.EntryMachine, m)
})

// ReportAfterSuite runs once, after every spec, with the whole suite's report: it holds
// the suite to its rules, then writes the report that the proof page is generated from.
var _ = ReportAfterSuite("the proof report", func(r Report) {
	problems := auditReport(r, lab.InCI())
	if len(problems) > 0 {
		// Written into the report too, so that a page built from it cannot show green.
		r.SuiteSucceeded = false
		r.SpecialSuiteFailureReasons = append(r.SpecialSuiteFailureReasons, problems...)
	}
	path, err := reportPath()
	Expect(err).NotTo(HaveOccurred())
	Expect(os.MkdirAll(filepath.Dir(path), 0o755)).To(Succeed())
	Expect(reporters.GenerateJSONReport(r, path)).To(Succeed())
	fmt.Fprintf(GinkgoWriter, "proof report: %s\n", path)
	if len(problems) > 0 {
		Fail(strings.Join(problems, "\n"))
	}
})

// auditReport checks the rules that no single spec can check of itself:
//   - every claim:<id> label names a claim registered in claims.go;
//   - under CI nothing is skipped or pending (lab.Require already fails under CI; this
//     catches a bare Skip, a PIt, a Pending container), but what a filter left out;
//   - every claim has at least one passing spec;
//   - a claim spec that passed attached evidence (lab.Record): a proof that shows nothing
//     of what the kernel answered cannot be checked by its reader.
func auditReport(r Report, ci bool) []string {
	var problems []string
	passed := map[string]bool{}
	for _, spec := range r.SpecReports {
		if !spec.LeafNodeType.Is(types.NodeTypeIt) {
			continue
		}
		name := spec.FullText()
		if spec.State.Is(types.SpecStatePassed) && len(spec.ReportEntries) == 0 && slices.ContainsFunc(spec.Labels(), isClaimLabel) {
			problems = append(problems, fmt.Sprintf("%q (%s) proves a claim but attached no evidence: lab.Record what the kernel answered", name, spec.LeafNodeLocation))
		}
		for _, label := range spec.Labels() {
			id, ok := strings.CutPrefix(label, "claim:")
			if !ok {
				continue
			}
			if _, known := Lookup(id); !known {
				problems = append(problems, fmt.Sprintf("%q (%s) is labelled %s, which claims.go does not register", name, spec.LeafNodeLocation, label))
			}
			if spec.State.Is(types.SpecStatePassed) {
				passed[id] = true
			}
		}
		// A spec that a focus or a label filter left out is reported skipped too, but with no
		// failure at all: a Skip() call, lab.Require's included, records its reason and line.
		leftOut := filtered(r) && spec.State.Is(types.SpecStateSkipped) && spec.Failure.IsZero()
		if ci && spec.State.Is(types.SpecStateSkipped|types.SpecStatePending) && !leftOut {
			why := spec.Failure.Message
			if why == "" {
				why = "not run"
			}
			problems = append(problems, fmt.Sprintf("CI never skips: %q was %s: %s", name, spec.State, why))
		}
	}
	// With a focus or a label filter only part of the suite ran, on purpose: the claims it
	// left out are not missing their proofs.
	if filtered(r) {
		return problems
	}
	for _, c := range Claims {
		if !passed[c.ID] {
			problems = append(problems, fmt.Sprintf("claim %s (chapter %d) has no passing spec labelled %s", c.ID, c.Chapter.Number, c.Label()))
		}
	}
	return problems
}

func isClaimLabel(l string) bool { return strings.HasPrefix(l, "claim:") }

func filtered(r Report) bool {
	c := r.SuiteConfig
	return r.SuiteHasProgrammaticFocus || c.LabelFilter != "" ||
		len(c.FocusStrings)+len(c.SkipStrings)+len(c.FocusFiles)+len(c.SkipFiles) > 0
}

// reportPath is $PORTPROOF_REPORT, a relative one taken from the repository's root, or else
// build/proof-report.json under that root.
func reportPath() (string, error) {
	p := os.Getenv("PORTPROOF_REPORT")
	if filepath.IsAbs(p) {
		return p, nil // a copied test binary run elsewhere (as another user, say) needs no go.mod
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	if p == "" {
		p = filepath.Join("build", "proof-report.json")
	}
	return filepath.Join(root, p), nil
}

// repoRoot is the nearest directory above the working directory that holds go.mod. go test
// runs a package's tests in the package's own directory, here specs/.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the specs with go test")
		}
		dir = parent
	}
}
