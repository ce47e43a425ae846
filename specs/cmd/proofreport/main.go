// Command proofreport turns the specs' JSON report into the docs site's proof page and its
// pictures: chapters/proofs.md, and SVG files drawn from the evidence the proofs attached.
//
//	go test ./specs/                  # writes build/proof-report.json
//	go run ./specs/cmd/proofreport    # writes chapters/proofs.md and chapters/img/proof/*.svg
//
// Run it from the repository's root (make docs does). Both outputs are generated, and
// ignored by git: they describe the kernel of the machine that ran the proofs.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	report := flag.String("report", "build/proof-report.json", "the specs' JSON report")
	out := flag.String("out", "chapters/proofs.md", "the proof page to write")
	img := flag.String("img", "img/proof", "where the pictures go, relative to the page's directory")
	flag.Parse()
	summary, err := run(*report, *out, *img)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proofreport:", err)
		os.Exit(1)
	}
	fmt.Println("proofreport:", summary)
}

// run writes the page and its pictures, and sums up what it wrote.
func run(reportPath, out, img string) (string, error) {
	r, err := loadReport(reportPath)
	if err != nil {
		return "", err
	}
	m, err := machineOf(r)
	if err != nil {
		return "", err
	}
	ps, unknown := proofs(r)
	pics, missing := pictures(r, ps)
	imgDir := filepath.Join(filepath.Dir(out), filepath.FromSlash(img))
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return "", err
	}
	for name, b := range pics {
		if err := os.WriteFile(filepath.Join(imgDir, name), b, 0o644); err != nil {
			return "", err
		}
	}
	page := writePage(r, ps, unknown, settings(m), img, missing)
	if err := os.WriteFile(out, page, 0o644); err != nil {
		return "", err
	}
	passed := 0
	for _, p := range ps {
		if p.State() == "passed" {
			passed++
		}
	}
	return fmt.Sprintf("%s: %d of %d claims passed; %d pictures in %s", out, passed, len(ps), len(pics), imgDir), nil
}
