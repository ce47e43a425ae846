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

# Performance: bench/ is a Go module of its own (gnet stays out of the main go.mod).
# `make bench` runs the echo servers (Go net, gnet, refserver, and refserver with a splice(2)
# echo of its own) side by side, every scenario against every server in alternation, then
# miniredis beside redis-server and the same protocol on Go net under redis-benchmark
# (Debian: apt-get install redis-server redis-tools), and writes the tables and the chart
# into chapters/performance.md; `make bench ROUNDS=1 DURATION=1s` is the quick look. `make scale` opens more than 65,536 connections to one
# address and port in a private network namespace.
# Both want root or unprivileged user namespaces (bench falls back to the host's loopback).
ROUNDS ?= 5
DURATION ?= 3s
SCALE_CONNS ?= 100000

.PHONY: bench scale bench-build

# The C server is the limit: refserver's design with no runtime, built by the system's C
# compiler (Debian: gcc).
bench-build:
	cd bench && go build -o bin/ ./servers/... ./cmd/... portproof/examples/miniredis && go build -o bin/refserver-cli portproof/refserver/cmd/refserver
	$(CC) -O2 -Wall -Wextra -Werror -pthread -o bench/bin/c-epoll bench/servers/c-epoll/echo.c

bench: bench-build
	@mkdir -p build
	bench/bin/bench -rounds $(ROUNDS) -duration $(DURATION) -page chapters/performance.md \
		-svg chapters/img/bench/bench.svg -json build/bench.json

scale: bench-build
	bench/bin/scale -conns $(SCALE_CONNS) -page chapters/performance.md
