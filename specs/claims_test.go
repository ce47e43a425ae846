//go:build linux

package specs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"portproof/specs/lab"
)

// The registry is checked against its sources: the article and the catalogue of claims,
// which every developer and CI run has beside the repository, in ../shared
// ($PORTPROOF_SHARED elsewhere).
var _ = Describe("The claims registry", Label("registry"), func() {
	It("registers every claim of claims.md, in its chapter, once", func() {
		catalogue := readShared("claims.md")
		want := parseCatalogue(catalogue)
		Expect(want).NotTo(BeEmpty(), "no claims found in claims.md: has its format changed?")

		var got []catalogued
		seen := map[string]bool{}
		for _, c := range Claims {
			Expect(seen).NotTo(HaveKey(c.ID), "claim %s is registered twice", c.ID)
			seen[c.ID] = true
			got = append(got, catalogued{ID: c.ID, Chapter: c.Chapter})
		}
		// The registry covers claims.md's chapters, or while Part II is being written some of
		// them: a chapter joins with all its claims and their specs. What it does not cover
		// yet is said, not passed over.
		var covered []catalogued
		var pending []string
		for _, c := range want {
			if slices.Contains(Chapters, c.Chapter) {
				covered = append(covered, c)
			} else if n := fmt.Sprintf("chapter %d", c.Chapter.Number); !slices.Contains(pending, n) {
				pending = append(pending, n)
			}
		}
		Expect(got).To(Equal(covered))
		Expect(Chapters).To(Equal(chaptersOf(covered)), "the registry's chapters, in claims.md's order")
		AddReportEntry("chapters of claims.md the registry does not cover yet", pending)
	})

	It("quotes the article word for word in Part I, with a verdict and one sentence of why", func() {
		article := normalizeSpace(readShared("article.txt"))
		for _, c := range Claims {
			Expect(c.Verdict).To(BeElementOf(True, Qualified, Corrected), "claim %s", c.ID)
			Expect(c.Why).To(HaveSuffix("."), "claim %s: why is one sentence", c.ID)
			Expect(strings.Count(strings.TrimSuffix(c.Why, "."), ". ")).To(BeZero(), "claim %s: why is one sentence", c.ID)
			if c.Chapter.Part == Article {
				Expect(article).To(ContainSubstring(normalizeSpace(c.Quote)), "claim %s: the quote is not the article's words", c.ID)
				Expect(c.Question+c.Source+c.SourceQuote).To(BeEmpty(), "claim %s: Part I quotes the article, not a source", c.ID)
			}
		}
	})

	It("asks each Part II question as claims.md does, and names and quotes its source", func() {
		questions := parseQuestions(readShared("claims.md"))
		for _, c := range Claims {
			if c.Chapter.Part != Beyond {
				continue
			}
			Expect(c.Quote).To(BeEmpty(), "claim %s: Part II has no article quote", c.ID)
			Expect(c.Question).To(Equal(questions[c.ID]), "claim %s: the question is claims.md's", c.ID)
			Expect(c.Source).To(MatchRegexp(`^(RFC [0-9]+, section [0-9.]+|[a-z][a-z0-9_]*\([0-9]\))`),
				"claim %s: the source is an RFC section or a manual page", c.ID)
			Expect(c.SourceQuote).NotTo(BeEmpty(), "claim %s: quote the source", c.ID)
		}
	})
})

type catalogued struct {
	ID      string
	Chapter Chapter
}

var (
	chapterHeading = regexp.MustCompile("^## (Part II, c|C)hapter ([0-9]+) - (.+)$")
	claimEntry     = regexp.MustCompile("^- `([a-z0-9.-]+)` - ")
	claimQuestion  = regexp.MustCompile("^- `([a-z0-9.-]+)` - \"([^\"]+\\?)\"")
)

// parseCatalogue reads claims.md's chapter headings ("## Chapter 1 - Title" in Part I,
// "## Part II, chapter 7 - Title" in Part II) and the claim ids listed under them
// ("- `tuple.identity` - ...").
func parseCatalogue(md string) []catalogued {
	var out []catalogued
	var ch *Chapter
	for _, line := range strings.Split(md, "\n") {
		if m := chapterHeading.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[2])
			part := Article
			if m[1] != "C" {
				part = Beyond
			}
			ch = &Chapter{Number: n, Title: strings.TrimSpace(m[3]), Part: part}
			continue
		}
		if strings.HasPrefix(line, "## ") {
			ch = nil // an introduction: no claims of its own
			continue
		}
		if m := claimEntry.FindStringSubmatch(line); m != nil && ch != nil {
			out = append(out, catalogued{ID: m[1], Chapter: *ch})
		}
	}
	return out
}

// parseQuestions reads the question a Part II entry of claims.md opens with, in quotes
// and ending in "?", by claim id; an entry that goes on from the one before has none.
func parseQuestions(md string) map[string]string {
	qs := map[string]string{}
	for _, line := range strings.Split(md, "\n") {
		if m := claimQuestion.FindStringSubmatch(line); m != nil {
			qs[m[1]] = m[2]
		}
	}
	return qs
}

func chaptersOf(cs []catalogued) []Chapter {
	var out []Chapter
	for _, c := range cs {
		if len(out) == 0 || out[len(out)-1] != c.Chapter {
			out = append(out, c.Chapter)
		}
	}
	return out
}

func readShared(name string) string {
	GinkgoHelper()
	dir := os.Getenv("PORTPROOF_SHARED")
	if dir == "" {
		root, err := repoRoot()
		Expect(err).NotTo(HaveOccurred())
		dir = filepath.Join(root, "..", "shared")
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	lab.Require(err == nil, "the registry is checked against shared/"+name+", and it cannot be read here: set PORTPROOF_SHARED")
	return string(b)
}

func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }
