// Package browsertest opens the built docs site (site/, from `make docs`) in Debian's
// headless chromium and checks it as a reader would meet it: every chapter of the nav
// renders with its pictures, the nav links lead to their chapters, search finds "backlog",
// the proof page shows every claim of the registry as passed, and no page asks anything of
// a host other than the local server it came from.
//
// It is a module of its own, so that chromedp never enters the main module's go.mod:
//
//	make docs && make browsertest
//	cd docs/browsertest && go test ./...
//
// Without site/ or chromium the test skips, but with CI=true it fails. BROWSERTEST_SITE
// points it at another built site, BROWSERTEST_CHROMIUM at another browser, and
// BROWSERTEST_SHOTS at a directory for a screenshot of every page it visits.
package browsertest
