# The docs site. `make docs` runs the proofs on this machine for a fresh report, turns it
# into the proof page and its pictures, and builds the site into site/; `make serve` shows it
# on 127.0.0.1 only; `make browsertest` opens it in headless chromium and checks it as a
# reader would meet it. MkDocs and chromium: see the README's "The docs site".

PORT ?= 8000
# Where the specs write their report: $PORTPROOF_REPORT, as the suite reads it, or its default.
REPORT := $(or $(PORTPROOF_REPORT),build/proof-report.json)

.PHONY: docs report site serve browsertest

docs: report site

# -count=1: a cached test result would not write the report again.
report:
	go test -count=1 ./specs/
	go run ./specs/cmd/proofreport -report $(REPORT) -out chapters/proofs.md

# The site alone, from the report already there (mkdocs refuses to build without the page).
site:
	mkdocs build --strict --site-dir site
	python3 docs/check_offline.py site

serve:
	@test -f site/index.html || { echo "no site/ yet: run make docs first"; exit 1; }
	@echo "portproof docs on http://127.0.0.1:$(PORT)/  (Ctrl-C to stop)"
	python3 -m http.server $(PORT) --bind 127.0.0.1 --directory site

# The built site in a real browser: every chapter, its pictures, the nav, search, the proof
# page, and nothing loaded from another host. A module of its own (chromedp stays out of the
# main go.mod); it needs site/ (make docs) and chromium (apt-get install chromium).
browsertest:
	@test -f site/index.html || { echo "no site/ yet: run make docs first"; exit 1; }
	cd docs/browsertest && go test -count=1 -v ./...
