//go:build linux

package specs

import (
	"os"
	"path/filepath"
	"regexp"
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
		Expect(got).To(Equal(want))
		Expect(Chapters).To(Equal(chaptersOf(want)))
	})

	It("quotes the article word for word, with a verdict and one sentence of why", func() {
		article := normalizeSpace(readShared("article.txt"))
		for _, c := range Claims {
			Expect(article).To(ContainSubstring(normalizeSpace(c.Quote)), "claim %s: the quote is not the article's words", c.ID)
			Expect(c.Verdict).To(BeElementOf(True, Qualified, Corrected), "claim %s", c.ID)
			Expect(c.Why).To(HaveSuffix("."), "claim %s: why is one sentence", c.ID)
			Expect(strings.Count(strings.TrimSuffix(c.Why, "."), ". ")).To(BeZero(), "claim %s: why is one sentence", c.ID)
		}
	})
})

type catalogued struct {
	ID      string
	Chapter Chapter
}

var (
	chapterHeading = regexp.MustCompile("^## Chapter ([0-9]+) - (.+)$")
	claimEntry     = regexp.MustCompile("^- `([a-z0-9.-]+)` - ")
)

// parseCatalogue reads claims.md's chapter headings ("## Chapter 1 - Title") and the claim
// ids listed under them ("- `tuple.identity` - ...").
func parseCatalogue(md string) []catalogued {
	var out []catalogued
	var ch *Chapter
	for _, line := range strings.Split(md, "\n") {
		if m := chapterHeading.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			ch = &Chapter{Number: n, Title: strings.TrimSpace(m[2])}
			continue
		}
		if strings.HasPrefix(line, "## ") {
			ch = nil // "Beyond the article": no claims of its own yet
			continue
		}
		if m := claimEntry.FindStringSubmatch(line); m != nil && ch != nil {
			out = append(out, catalogued{ID: m[1], Chapter: *ch})
		}
	}
	return out
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
