package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// repoRoot is the repository's root, from this package's directory, where go test runs it.
const repoRoot = "../.."

const (
	// The whole test, browser start included. It takes under a minute, a second or so per
	// fold it clicks open on a busy machine; the margin is for a busier one.
	testTimeout = 6 * time.Minute
	// One step: a page to load, search to answer.
	stepTimeout = 30 * time.Second
	// One click to lead to its page.
	clickTimeout = 15 * time.Second
)

// pictures are the pictures a page must show, by the page's path: those that
// specs/cmd/proofreport draws from the proofs' evidence (pictures.go), each under its
// claim on the proof page (pictureOf in page.go) and in its chapter; and the server pages',
// drawn from several proofs each (pictures_server.go), which the proof page leaves out.
var pictures = map[string][]string{
	"/server/":         {"server-steps.svg"},
	"/ch1-five-tuple/": {"tuple-identity.svg"},
	"/ch3-limits/":     {"port-space.svg"},
	"/ch5-handshake/":  {"handshake.svg"},
	"/ch9-dual-stack/": {"dual-stack.svg"},
	"/ch10-epoll/":     {"epoll-triggers.svg", "epoll-scale.svg", "epoll-herd.svg"},
	"/loop/":           {"loop-spare.svg"},
	"/proofs/": {"tuple-identity.svg", "port-space.svg", "handshake.svg",
		"dual-stack.svg", "epoll-triggers.svg", "epoll-scale.svg", "epoll-herd.svg"},
}

// generatedPages are written by programs, not by a person: the proof page (proofreport) and
// the performance page (make bench). The reading rules of checkReading leave them out.
var generatedPages = map[string]bool{"proofs.md": true, "performance.md": true}

// signposts are pages that teach nothing of their own and carry no picture: the front page,
// which sends the reader to the primer, and the list of where to go next.
var signposts = map[string]bool{"index.md": true, "further.md": true}

const (
	// primerFile is the primer, "TCP in a few pages": the nav's first page after the front
	// page, since every chapter links its terms to it.
	primerFile = "primer.md"
	// maxOpenLines is the longest code block a chapter may show unfolded; what is longer
	// goes in a fold (??? example), one click away.
	maxOpenLines = 30
)

// The text the regions hook (docs/hooks/regions.py) puts where a pending spec file's code
// would be, and the snippet marker it replaces: neither may reach a reader.
const (
	notLanded = "has not landed yet"
	snippet   = "--8<--"
)

func TestSite(t *testing.T) {
	siteDir := envOr("BROWSERTEST_SITE", filepath.Join(repoRoot, "site"))
	if _, err := os.Stat(filepath.Join(siteDir, "index.html")); err != nil {
		unavailable(t, "no built site in %s: run `make docs` first", siteDir)
	}
	chromium, err := findChromium()
	if err != nil {
		unavailable(t, "no chromium to test the site with (apt-get install chromium): %v", err)
	}
	nav, err := readNav(filepath.Join(repoRoot, "mkdocs.yml"))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := readClaims(filepath.Join(repoRoot, "specs", "claims.go"))
	if err != nil {
		t.Fatal(err)
	}

	site := serveSite(t, siteDir)
	trap := trapProxy(t)
	t.Logf("site %s served on %s; %d pages in the nav, %d claims in the registry; %s", siteDir, site.base, len(nav), len(claims), chromium)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900), // wide enough for Material's nav sidebar
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Fewer of Chromium's own calls home (network time, autofill queries, safe browsing,
		// metrics), so that the trap below has less to catch; it catches the rest.
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,"+
			"NetworkTimeServiceQuerying,AutofillServerCommunication"),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		// Every request for a host but loopback (which Chromium never proxies) goes to the
		// trap, which records it and answers 502: nothing leaves the machine, even from a
		// worker the DevTools events below do not see.
		chromedp.ProxyServer("http://"+trap.addr),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	w := &watcher{origin: site.base}
	start := time.Now()
	if err := chromedp.Listen(bctx, w.event); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", chromium, err)
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))
	shots := newShots(t)

	// Every page of the nav, reached from the front page by clicking its nav link.
	pages := map[string]pageInfo{}
	t.Run("chapters", func(t *testing.T) {
		checkPrimerFirst(t, nav)
		start := time.Now()
		open := func(entry navEntry) (*network.Response, error) {
			ctx, cancel := context.WithTimeout(bctx, stepTimeout)
			defer cancel()
			return chromedp.Run(ctx, chromedp.NavigateResponse(site.base+entry.Path))
		}
		read := func() (pageInfo, error) {
			ctx, cancel := context.WithTimeout(bctx, stepTimeout)
			defer cancel()
			return chromedp.Run(ctx, chromedp.Evaluate[pageInfo](pageInfoJS, chromedp.EvalAwaitPromise))
		}
		var shown []string // the nav of the page before
		for i, entry := range nav {
			var resp *network.Response
			var err error
			how := "clicked in the nav from " + nav[max(i-1, 0)].Path
			if i == 0 {
				how = "opened"
				resp, err = open(entry)
			} else if !slices.Contains(shown, entry.Title) {
				// Reported by checkPage with the rest of the nav; no click to wait for.
				how = "opened by its URL, the nav has no link to it"
				resp, err = open(entry)
			} else if resp, err = follow(t, bctx, navLink(entry.Title), entry.Path); err != nil {
				shots.failed(bctx, entry.Path)
				t.Errorf("clicking %q in the nav: %v", entry.Title, err)
				how = "opened by its URL, the click failed"
				resp, err = open(entry) // and go on from there
			}
			if err != nil {
				t.Fatalf("%q (%s): %v", entry.Title, entry.Path, err)
			}
			p, err := read()
			if err == nil && p.Path != entry.Path {
				t.Errorf("clicking %q in the nav landed on %s (HTTP %d), not %s", entry.Title, p.Path, resp.Status, entry.Path)
				how = "opened by its URL, the click went astray"
				if resp, err = open(entry); err == nil {
					p, err = read()
				}
			}
			if err != nil {
				t.Fatalf("%q (%s): reading the page: %v", entry.Title, entry.Path, err)
			}
			pages[entry.Path] = p
			shown = p.Nav
			t.Logf("%-34s %s: HTTP %d, h1 %q, %d images", entry.Path, how, resp.Status, p.H1, len(p.Images))
			if !okStatus(resp.Status) {
				t.Errorf("%s: HTTP %d", entry.Path, resp.Status)
			}
			checkPage(t, entry, p, nav)
			if i == 0 && len(p.Nav) > 1 && len(nav) > 1 && nav[1].File == primerFile && p.Nav[1] != nav[1].Title {
				t.Errorf("%s: the nav shows %q after the front page, not the primer (%q)", entry.Path, p.Nav[1], nav[1].Title)
			}
			shots.take(bctx, entry.Path, "")
			for _, name := range pictures[entry.Path] {
				shots.take(bctx, entry.Path+name, `article img[src$="/`+name+`"]`)
			}
			if !generatedPages[entry.File] {
				checkReading(t, bctx, entry, p)
			}
		}
		t.Logf("%d pages in %v", len(nav), time.Since(start).Round(time.Millisecond))
	})

	t.Run("anchors", func(t *testing.T) {
		checkAnchors(t, site.base, nav, pages)
	})

	t.Run("search", func(t *testing.T) {
		start := time.Now()
		checkSearch(t, bctx, site.base, siteDir, "backlog", "/ch4-backlog/", shots)
		t.Logf("search answered and led to its page in %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("proofs", func(t *testing.T) {
		checkProofs(t, bctx, site.base, claims, nav, pages)
	})

	t.Run("offline", func(t *testing.T) {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, u := range w.foreign {
			t.Errorf("the browser asked for %s: the site must load nothing from a host but 127.0.0.1", u)
		}
		trapped, own := trap.got()
		for _, r := range trapped {
			t.Errorf("the browser asked another host (the proxy caught it, so maybe from a worker): %s", r)
		}
		for _, f := range w.failed {
			t.Errorf("a request failed: %s", f)
		}
		for _, f := range site.failures() {
			t.Errorf("the site's server answered %s", f)
		}
		for _, e := range w.errs {
			t.Errorf("the page reported an error: %s", e)
		}
		// The watch itself works: it saw the pages' requests, and the search index came from
		// the local server.
		if len(w.seen) < len(nav) {
			t.Errorf("the DevTools events showed only %d requests for %d pages: the watch is blind", len(w.seen), len(nav))
		}
		if !slices.Contains(site.paths(), "/search/search_index.json") {
			t.Errorf("the search index was never fetched from %s", site.base)
		}
		t.Logf("%d requests from the pages (%d not to %s); its server answered %d, the rest came from the cache",
			len(w.seen), len(w.foreign), site.base, len(site.paths()))
		if len(own) > 0 {
			t.Logf("Chromium's own calls home, caught by the proxy and answered 502: %s", strings.Join(own, "; "))
		}
	})
}

// unavailable skips the test for want of what it needs, or fails it under CI.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("%s (CI=true: a skip would hide it)", msg)
	}
	t.Skip(msg)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// findChromium is $BROWSERTEST_CHROMIUM, or Debian's chromium on the PATH.
func findChromium() (string, error) {
	if p := os.Getenv("BROWSERTEST_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	return exec.LookPath("chromium")
}

// navEntry is one page of mkdocs.yml's nav.
type navEntry struct {
	Title string // as the nav shows it
	File  string // under chapters/
	Path  string // its URL path on the site: "/", "/ch1-five-tuple/"
}

var (
	navLine    = regexp.MustCompile(`^\s*-\s+(.+?):\s+(\S+\.md)\s*$`)
	navSection = regexp.MustCompile(`^\s*-\s+(.+?):\s*$`)
)

// readNav reads mkdocs.yml's nav: "- Title: page.md" lines, some grouped under a section
// line ("- Part I, the article:") whose pages are indented below it.
func readNav(file string) ([]navEntry, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var nav []navEntry
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case line == "nav:":
			in = true
			continue
		case !in || trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		case !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "-"):
			in = false
			continue
		}
		if navSection.MatchString(line) {
			continue // the pages below it are the section
		}
		m := navLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%s: a nav line this test cannot read: %q (it reads `- Title: page.md` and `- Section:` lines)", file, line)
		}
		title := strings.Trim(m[1], `"'`)
		page := strings.TrimSuffix(m[2], ".md")
		p := "/" + strings.TrimSuffix(strings.TrimSuffix(page, "index"), "/") + "/"
		if p == "//" {
			p = "/"
		}
		nav = append(nav, navEntry{Title: title, File: m[2], Path: p})
	}
	if len(nav) == 0 {
		return nil, fmt.Errorf("%s: no nav", file)
	}
	return nav, nil
}

var claimID = regexp.MustCompile(`(?m)^\s*ID:\s*"([^"]+)"`)

// readClaims reads the ids of the registry, specs.Claims, from its source.
func readClaims(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	src := string(data)
	i := strings.Index(src, "var Claims = []Claim{")
	if i < 0 {
		return nil, fmt.Errorf("%s: no `var Claims = []Claim{`", file)
	}
	end := strings.Index(src[i:], "\n}\n")
	if end < 0 {
		return nil, fmt.Errorf("%s: the Claims list does not end", file)
	}
	var ids []string
	for _, m := range claimID.FindAllStringSubmatch(src[i:i+end], -1) {
		ids = append(ids, m[1])
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s: no claim ids in Claims", file)
	}
	return ids, nil
}

// site is the built site served on 127.0.0.1, with what its server answered.
type site struct {
	base string // "http://127.0.0.1:port"
	mu   sync.Mutex
	log  []served
}

type served struct {
	path   string
	status int
}

func (s *site) paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []string
	for _, r := range s.log {
		ps = append(ps, r.path)
	}
	return ps
}

func (s *site) failures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fs []string
	for _, r := range s.log {
		if r.status >= 400 {
			fs = append(fs, fmt.Sprintf("%d for %s", r.status, r.path))
		}
	}
	return fs
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func serveSite(t *testing.T, dir string) *site {
	t.Helper()
	s := &site{}
	files := http.FileServer(http.Dir(dir))
	s.base = "http://" + serveLoopback(t, func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		files.ServeHTTP(sw, r)
		s.mu.Lock()
		s.log = append(s.log, served{r.URL.Path, sw.status})
		s.mu.Unlock()
	})
	return s
}

// serveLoopback serves h over HTTP on 127.0.0.1, on a port the kernel chose, until the test
// ends, and returns the address: the site's server and the trap are both such servers.
func serveLoopback(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// trap is the browser's proxy: every request it gets was meant for a host other than
// loopback, whoever made it: a page, a worker (whose requests the page's DevTools events do
// not show), or Chromium itself. It answers 502, so nothing leaves the machine.
type trap struct {
	addr string
	mu   sync.Mutex
	site []string // for any host but Chromium's own services: the site's, or a worker's
	own  []string // for Chromium's own services, which it calls whatever the page
}

// chromiumOwn are the domains of the services Chromium 156 calls by itself however it is
// started (component updates, the accounts check, network time): the flags quiet most of
// it, not all. No page of the site may load from them either; the DevTools events see to
// that for the pages, and the pictures, fonts and scripts a worker might fetch live elsewhere.
var chromiumOwn = []string{"google.com", "googleapis.com", "gvt1.com"}

func (p *trap) got() (site, own []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.site), slices.Clone(p.own)
}

func trapProxy(t *testing.T) *trap {
	t.Helper()
	p := &trap{}
	p.addr = serveLoopback(t, func(w http.ResponseWriter, r *http.Request) {
		target, host := r.URL.String(), r.URL.Hostname()
		if r.Method == http.MethodConnect {
			target, host = r.Host, r.Host
			if h, _, err := net.SplitHostPort(r.Host); err == nil {
				host = h
			}
		}
		own := slices.ContainsFunc(chromiumOwn, func(d string) bool {
			return host == d || strings.HasSuffix(host, "."+d)
		})
		p.mu.Lock()
		if own {
			p.own = append(p.own, r.Method+" "+target)
		} else {
			p.site = append(p.site, r.Method+" "+target)
		}
		p.mu.Unlock()
		http.Error(w, "portproof's browser test: the docs site must not leave 127.0.0.1", http.StatusBadGateway)
	})
	return p
}

// watcher records, from the DevTools events of the tab, every request and whether it
// went elsewhere or failed, and the scripts' errors.
type watcher struct {
	origin  string
	mu      sync.Mutex
	seen    []string
	urls    map[network.RequestID]string
	foreign []string
	failed  []string
	errs    []string
}

// local says whether the browser may ask for u: the site's own server, or a URL that
// names no host (data:, blob:, about:).
func (w *watcher) local(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	switch pu.Scheme {
	case "data", "blob", "about":
		return true
	}
	return pu.Scheme+"://"+pu.Host == w.origin
}

// event runs in chromedp's read loop: it only records.
func (w *watcher) event(ev any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		u := ev.Request.URL
		if w.urls == nil {
			w.urls = map[network.RequestID]string{}
		}
		w.urls[ev.RequestID] = u
		w.seen = append(w.seen, u)
		if !w.local(u) {
			w.foreign = append(w.foreign, fmt.Sprintf("%s (%s, from %s)", u, ev.Type, ev.DocumentURL))
		}
	case *network.EventLoadingFailed:
		// A page left by a click may cancel what it still loads; that is no fault.
		if !ev.Canceled {
			w.failed = append(w.failed, fmt.Sprintf("%s: %s", w.urls[ev.RequestID], ev.ErrorText))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		w.errs = append(w.errs, fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var args []string
			for _, a := range ev.Args {
				if a.Description != "" {
					args = append(args, a.Description)
				} else {
					args = append(args, string(a.Value))
				}
			}
			w.errs = append(w.errs, "console.error: "+strings.Join(args, " "))
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			w.errs = append(w.errs, fmt.Sprintf("%s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

// pageInfo is what a page shows a reader, as its DOM has it once the pictures are decoded.
type pageInfo struct {
	Path    string   `json:"path"`
	H1      string   `json:"h1"`
	Text    string   `json:"text"`
	Nav     []string `json:"nav"`
	Images  []image  `json:"images"`
	Objects []object `json:"objects"`
	Links   []string `json:"links"`
	// Blocks are the article's code blocks as the page opens, before any click.
	Blocks []codeBlock `json:"blocks"`
	// Opening says what comes first in the article: "prose" (a paragraph of 40 characters or
	// more before any code block), "code" (a code block before any such paragraph, which
	// FirstCode begins), or "" (no code at all).
	Opening   string   `json:"opening"`
	FirstCode string   `json:"firstCode"`
	IDs       []string `json:"ids"` // every element id of the page: where its #anchors lead
}

// codeBlock is one <pre> of an article.
type codeBlock struct {
	First  string `json:"first"`  // its first line, which names it in a failure
	Lines  int    `json:"lines"`  // its lines as rendered
	Folded bool   `json:"folded"` // inside a closed <details>: hidden until a click
}

type image struct {
	Src      string `json:"src"` // as written
	URL      string `json:"url"` // as resolved
	Complete bool   `json:"complete"`
	Width    int    `json:"width"` // naturalWidth: 0 when it did not load or decode
	Alt      string `json:"alt"`
}

type object struct {
	URL   string `json:"url"`
	Type  string `json:"type"`
	SVG   bool   `json:"svg"` // its document is an <svg>
	Width int    `json:"width"`
}

const pageInfoJS = `(async () => {
	const art = document.querySelector('article.md-content__inner') || document.body;
	const imgs = [...art.querySelectorAll('img')];
	await Promise.all(imgs.map(i => i.decode().catch(() => {})));
	const objs = [...art.querySelectorAll('object')];
	await Promise.all(objs.map(o => o.contentDocument ? null : new Promise(done => {
		o.addEventListener('load', done, {once: true});
		o.addEventListener('error', done, {once: true});
		setTimeout(done, 5000);
	})));
	// A code block's text as rendered, without the newline Pygments ends it with.
	const codeText = pre => (pre.querySelector('code') || pre).textContent.replace(/\n$/, '');
	const pres = [...art.querySelectorAll('pre')];
	// The opening text: the first paragraph of the article itself (not a quote, not a box)
	// with at least 40 characters, so that a picture or a lone link does not count.
	const opening = [...art.querySelectorAll(':scope > p')].find(p => p.textContent.trim().length >= 40);
	const h1 = art.querySelector('h1');
	const head = h1 ? h1.cloneNode(true) : null;
	if (head) head.querySelectorAll('.headerlink').forEach(a => a.remove());
	return {
		path: location.pathname,
		h1: head ? head.textContent.trim() : '',
		text: art.innerText,
		nav: [...document.querySelectorAll('nav.md-nav--primary a.md-nav__link')].filter(a => !a.closest('nav.md-nav--secondary'))
			.map(a => a.textContent.trim()),
		images: imgs.map(i => ({src: i.getAttribute('src') || '', url: i.currentSrc || i.src,
			complete: i.complete, width: i.naturalWidth, alt: i.alt})),
		objects: objs.map(o => {
			const root = o.contentDocument && o.contentDocument.documentElement;
			return {url: o.data, type: o.type, svg: !!root && root.localName === 'svg',
				width: root && root.getBoundingClientRect ? Math.round(root.getBoundingClientRect().width) : 0};
		}),
		links: [...art.querySelectorAll('a[href]')].map(a => a.href),
		blocks: pres.map(pre => {
			const lines = codeText(pre).split('\n');
			return {first: lines[0].trim(), lines: lines.length, folded: !!pre.closest('details:not([open])')};
		}),
		opening: !pres.length ? '' : (opening && (opening.compareDocumentPosition(pres[0]) & Node.DOCUMENT_POSITION_FOLLOWING) ? 'prose' : 'code'),
		firstCode: pres.length ? codeText(pres[0]).split('\n')[0].trim() : '',
		ids: [...document.querySelectorAll('[id]')].map(e => e.id),
	};
})()`

// follow clicks the link sel, with the mouse as a reader would, and waits for the page it
// leads to, whose path is want. A click that lands while the page still moves (Material
// sizes the sidebar from its script, and redraws search results as they come) can miss on a
// busy machine: then, and only if the page did not change, it clicks once more.
func follow(t *testing.T, bctx context.Context, sel chromedp.JSPath, want string) (*network.Response, error) {
	t.Helper()
	var err error
	for try := 1; try <= 2; try++ {
		ctx, cancel := context.WithTimeout(bctx, clickTimeout)
		var resp *network.Response
		resp, err = chromedp.RunResponse(ctx, chromedp.Click(sel))
		cancel()
		if err == nil {
			return resp, nil
		}
		ctx, cancel = context.WithTimeout(bctx, clickTimeout)
		loc, lerr := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`))
		cancel()
		if lerr != nil || loc == want {
			break // it went somewhere: no second click on another page
		}
		t.Logf("a click for %s led nowhere in %v (%v): clicking again", want, clickTimeout, err)
	}
	return nil, err
}

// okStatus: the page came, fresh or revalidated.
func okStatus(code int64) bool { return code == http.StatusOK || code == http.StatusNotModified }

// navLink is the primary nav's link to the page titled title.
func navLink(title string) chromedp.JSPath {
	return chromedp.JSPath(fmt.Sprintf(`[...document.querySelectorAll('nav.md-nav--primary a.md-nav__link')].find(a => !a.closest('nav.md-nav--secondary') && a.textContent.trim() === %s)`, jsString(title)))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// checkPage checks that a page of the nav rendered: where it should be, with a heading,
// the whole nav, its code and its pictures.
func checkPage(t *testing.T, entry navEntry, p pageInfo, nav []navEntry) {
	t.Helper()
	where := entry.Path
	if p.H1 == "" {
		t.Errorf("%s: no heading (no <h1> in the article)", where)
	}
	for _, bad := range []string{notLanded, snippet} {
		if i := strings.Index(p.Text, bad); i >= 0 {
			t.Errorf("%s: the page says %q", where, lineAround(p.Text, i))
		}
	}
	var titles []string
	for _, e := range nav {
		titles = append(titles, e.Title)
	}
	if !slices.Equal(p.Nav, titles) {
		t.Errorf("%s: the nav shows %q, mkdocs.yml has %q (is site/ older than mkdocs.yml? make docs)", where, p.Nav, titles)
	}
	for _, img := range p.Images {
		if !img.Complete || img.Width == 0 {
			t.Errorf("%s: the picture %s (%q) did not load", where, img.Src, img.Alt)
		}
	}
	for _, o := range p.Objects {
		if strings.Contains(o.Type, "svg") || strings.HasSuffix(o.URL, ".svg") {
			if !o.SVG || o.Width == 0 {
				t.Errorf("%s: the SVG object %s did not load", where, o.URL)
			}
		}
	}
	for _, name := range pictures[entry.Path] {
		found := false
		for _, img := range p.Images {
			u, err := url.Parse(img.URL)
			if err == nil && u.Path == "/img/proof/"+name && img.Width > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no picture img/proof/%s (its images: %v)", where, name, p.Images)
		}
	}
}

// lineAround is the line of text that holds position i.
func lineAround(text string, i int) string {
	start := strings.LastIndex(text[:i], "\n") + 1
	end := strings.Index(text[i:], "\n")
	if end < 0 {
		return text[start:]
	}
	return text[start : i+end]
}

type searchResult struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

// checkSearch types the query into Material's search box on the front page, waits for the
// search worker's results, and follows the one that leads to want.
func checkSearch(t *testing.T, bctx context.Context, base, siteDir, query, want string, shots *shots) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, stepTimeout)
	defer cancel()
	box := chromedp.CSS("input.md-search__input")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(box)); err != nil {
		t.Fatalf("opening the front page: %v", err)
	}
	// Material's worker says it is ready by replacing the placeholder the page is built
	// with ("Initializing search"), which may have happened already.
	initial, err := searchPlaceholder(siteDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		fmt.Sprintf(`document.querySelector('.md-search-result__meta').textContent.trim() !== %s`, jsString(initial)),
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout))); err != nil {
		t.Fatalf("the search index never loaded (the search box still says %q): %v", initial, err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(box), chromedp.SendKeys(box, query)); err != nil {
		t.Fatalf("typing %q into the search box: %v", query, err)
	}
	// Results come as the query grows, a key at a time: wait for those of the whole word,
	// every highlight the word itself, before reading or clicking one.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`(() => {
		const q = %s, marks = [...document.querySelectorAll('.md-search-result mark')];
		return document.querySelector('input.md-search__input').value === q &&
			document.querySelectorAll('li.md-search-result__item').length > 0 &&
			marks.length > 0 && marks.every(m => m.textContent.toLowerCase() === q);
	})()`, jsString(query)), chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout))); err != nil {
		shots.failed(bctx, "search-"+query)
		t.Fatalf("searching for %q: no results for the whole word appeared: %v", query, err)
	}
	results, err := chromedp.Run(ctx, chromedp.Evaluate[[]searchResult](`[...document.querySelectorAll('li.md-search-result__item a.md-search-result__link')].map(a => ({href: a.href, text: a.innerText}))`))
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('.md-search-result__meta').textContent.trim()`))
	marks, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.md-search-result mark').length`))
	t.Logf("search %q: %q, %d results, %d highlighted words", query, meta, len(results), marks)
	shots.take(bctx, "search-"+query, "")
	if len(results) == 0 || marks == 0 {
		t.Fatalf("search %q: %d results, %d highlighted", query, len(results), marks)
	}
	hit := ""
	for _, r := range results {
		if u, err := url.Parse(r.Href); err == nil && u.Path == want {
			hit = r.Href
			break
		}
	}
	if hit == "" {
		t.Fatalf("search %q: no result leads to %s: %v", query, want, results)
	}
	link := chromedp.JSPath(fmt.Sprintf(`[...document.querySelectorAll('li.md-search-result__item a.md-search-result__link')].find(a => a.href === %s)`, jsString(hit)))
	resp, err := follow(t, bctx, link, want)
	if err != nil {
		shots.failed(bctx, "search-result")
		t.Fatalf("clicking the result %s: %v", hit, err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`))
	if err != nil || loc != want || !okStatus(resp.Status) {
		t.Errorf("the result %s led to %s (HTTP %d, %v)", hit, loc, resp.Status, err)
	}
}

var searchMeta = regexp.MustCompile(`(?s)<div class="md-search-result__meta">\s*(.*?)\s*</div>`)

// searchPlaceholder is what the search results say in the built front page, before the
// search worker has the index.
func searchPlaceholder(siteDir string) (string, error) {
	html, err := os.ReadFile(filepath.Join(siteDir, "index.html"))
	if err != nil {
		return "", err
	}
	m := searchMeta.FindSubmatch(html)
	if m == nil {
		return "", fmt.Errorf("%s/index.html: no Material search box (md-search-result__meta)", siteDir)
	}
	return string(m[1]), nil
}

type claimRow struct {
	ID      string `json:"id"`
	Chapter string `json:"chapter"`
	State   string `json:"state"`
	Anchor  string `json:"anchor"`
	Heading string `json:"heading"` // the heading the row's link leads to, on this page
}

type proofPage struct {
	Rows        []claimRow   `json:"rows"`
	Admonitions []admonition `json:"admonitions"`
}

type admonition struct {
	Class string `json:"class"`
	Title string `json:"title"`
	Body  string `json:"body"`
	After string `json:"after"` // the picture right before it, if any
}

const proofPageJS = `(() => {
	const art = document.querySelector('article.md-content__inner');
	const head = t => [...t.querySelectorAll('thead th')].map(th => th.textContent.trim().toLowerCase()).join('|');
	const glance = [...art.querySelectorAll('table')].find(t => head(t) === 'claim|chapter|verdict|state');
	const text = el => { if (!el) return ''; const c = el.cloneNode(true); c.querySelectorAll('.headerlink').forEach(a => a.remove()); return c.textContent.trim(); };
	return {
		rows: glance ? [...glance.tBodies[0].rows].map(tr => {
			const a = tr.cells[0].querySelector('a');
			const anchor = a ? decodeURIComponent(a.hash.slice(1)) : '';
			return {id: tr.cells[0].textContent.trim(), chapter: tr.cells[1].textContent.trim(),
				state: tr.cells[3].textContent.trim(), anchor: anchor,
				heading: text(anchor ? document.getElementById(anchor) : null)};
		}) : [],
		admonitions: [...art.querySelectorAll('.admonition')].map(d => {
			const img = d.previousElementSibling && d.previousElementSibling.querySelector('img');
			return {class: d.className, title: text(d.querySelector('.admonition-title')),
				body: d.innerText.trim(), after: img ? img.getAttribute('src') : ''};
		}),
	};
})()`

// checkProofs checks the proof page against the registry: every claim listed once, passed,
// with its section, and nothing on the page that says otherwise; and every chapter links to
// its claims' sections.
func checkProofs(t *testing.T, bctx context.Context, base string, claims []string, nav []navEntry, pages map[string]pageInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/proofs/"), chromedp.WaitReady(chromedp.CSS("article table"))); err != nil {
		t.Fatalf("opening the proof page: %v", err)
	}
	pp, err := chromedp.Run(ctx, chromedp.Evaluate[proofPage](proofPageJS))
	if err != nil {
		t.Fatal(err)
	}
	if len(pp.Rows) == 0 {
		t.Fatal("the proof page has no claim|chapter|verdict|state table")
	}
	rows := map[string]claimRow{}
	passed := 0
	for _, r := range pp.Rows {
		if _, dup := rows[r.ID]; dup {
			t.Errorf("claim %s is listed twice", r.ID)
		}
		rows[r.ID] = r
		if !slices.Contains(claims, r.ID) {
			t.Errorf("the page lists claim %s, which specs/claims.go does not have", r.ID)
		}
	}
	for _, id := range claims {
		r, ok := rows[id]
		switch {
		case !ok:
			t.Errorf("claim %s: missing from the proof page", id)
			continue
		case r.State != "passed":
			t.Errorf("claim %s (chapter %s): %q, not passed", id, r.Chapter, r.State)
		default:
			passed++
		}
		// Its section: the heading the table links to says the same.
		if r.Heading == "" {
			t.Errorf("claim %s: its link #%s leads to no section", id, r.Anchor)
		} else if !strings.Contains(r.Heading, id) || !strings.HasSuffix(r.Heading, ": passed") {
			t.Errorf("claim %s: its section is headed %q", id, r.Heading)
		}
		// Its chapter links to its section.
		ch, err := strconv.Atoi(r.Chapter)
		if err != nil {
			t.Errorf("claim %s: chapter %q", id, r.Chapter)
			continue
		}
		for _, e := range nav {
			if !strings.HasPrefix(e.File, fmt.Sprintf("ch%d-", ch)) {
				continue
			}
			if !linksTo(pages[e.Path].Links, "/proofs/", r.Anchor) {
				t.Errorf("claim %s: chapter %d (%s) has no link to its proof, /proofs/#%s", id, ch, e.Path, r.Anchor)
			}
		}
	}
	summary := fmt.Sprintf("%d of %d claims proven", len(claims), len(claims))
	found := false
	for _, a := range pp.Admonitions {
		classes := strings.Fields(a.Class)
		switch {
		case slices.Contains(classes, "success") && a.Title == summary:
			found = true
		case slices.Contains(classes, "failure"), slices.Contains(classes, "warning"), slices.Contains(classes, "danger"):
			t.Errorf("the proof page says %q (%s)", a.Title, a.Class)
		case strings.Contains(a.Title, "No picture"):
			t.Errorf("the proof page says %q under %s: the picture is a placeholder, not drawn from evidence", a.Title, a.After)
		}
	}
	if !found {
		t.Errorf("the proof page does not say %q in a success box: %v", summary, pp.Admonitions)
	}
	t.Logf("proof page: %d of %d registered claims shown as passed", passed, len(claims))
}

// linksTo says whether one of links leads to the page at p, at #fragment.
func linksTo(links []string, p, fragment string) bool {
	for _, l := range links {
		u, err := url.Parse(l)
		if err == nil && u.Path == p && u.Fragment == fragment {
			return true
		}
	}
	return false
}

// shots saves a screenshot of each page to $BROWSERTEST_SHOTS, when it is set.
type shots struct {
	t   *testing.T
	dir string
	n   int
}

func newShots(t *testing.T) *shots {
	dir := os.Getenv("BROWSERTEST_SHOTS")
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &shots{t: t, dir: dir}
}

// failed saves what the tab shows when a step fails, in $BROWSERTEST_SHOTS or else the
// temporary directory, and says where.
func (s *shots) failed(ctx context.Context, name string) {
	dir := s.dir
	if dir == "" {
		dir = os.TempDir()
	}
	file := filepath.Join(dir, "portproof-browsertest-failed-"+strings.Trim(strings.ReplaceAll(name, "/", "-"), "-")+".png")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err == nil {
		err = os.WriteFile(file, png, 0o644)
	}
	if err != nil {
		s.t.Logf("the tab was at %s; no screenshot: %v", loc, err)
		return
	}
	s.t.Logf("the tab was at %s: screenshot in %s", loc, file)
}

// take saves the viewport, or the element of the CSS selector css.
func (s *shots) take(ctx context.Context, name, css string) {
	if s.dir == "" {
		return
	}
	s.n++
	slug := strings.Trim(strings.ReplaceAll(path.Clean(name), "/", "-"), "-")
	if slug == "" {
		slug = "index"
	}
	file := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, slug))
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	var png []byte
	var err error
	if css == "" {
		png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	} else {
		png, err = chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(css)))
	}
	if err == nil {
		err = os.WriteFile(file, png, 0o644)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		s.t.Logf("screenshot %s: %v", file, err)
	}
}

// checkPrimerFirst checks mkdocs.yml's nav: the primer right after the front page.
func checkPrimerFirst(t *testing.T, nav []navEntry) {
	t.Helper()
	switch {
	case len(nav) < 2:
		t.Errorf("the nav has %d pages: want the front page, then the primer (%s)", len(nav), primerFile)
	case nav[0].Path != "/":
		t.Errorf("the nav begins with %s (%q), not the front page", nav[0].File, nav[0].Title)
	case nav[1].File != primerFile:
		t.Errorf("the nav's page after the front page is %s (%q): want the primer, %s, there, "+
			"since every chapter links its terms to it", nav[1].File, nav[1].Title, primerFile)
	}
}

// checkReading checks a chapter page as a reader meets it: a picture that loaded, no long code
// block left open, the opening text before any code; then it clicks every fold open, and checks
// that each shows its code and that no line of code, folded or not, is cut off.
func checkReading(t *testing.T, bctx context.Context, entry navEntry, p pageInfo) {
	t.Helper()
	where := entry.Path
	loaded := 0
	for _, img := range p.Images {
		if img.Complete && img.Width > 0 {
			loaded++
		}
	}
	for _, o := range p.Objects {
		if o.SVG && o.Width > 0 {
			loaded++
		}
	}
	if loaded == 0 && !signposts[entry.File] {
		t.Errorf("%s: no picture loaded (want one at least; its images: %v)", where, p.Images)
	}
	for _, b := range p.Blocks {
		if !b.Folded && b.Lines > maxOpenLines {
			t.Errorf("%s: a code block of %d lines is open, more than %d: fold it (??? example) "+
				"and show the lines that carry the point; it begins %q", where, b.Lines, maxOpenLines, b.First)
		}
	}
	if p.Opening == "code" {
		t.Errorf("%s: the first code block comes before the opening text (a paragraph of prose); "+
			"it begins %q", where, p.FirstCode)
	}
	checkFolds(t, bctx, where)
}

// fold is one <details> of an article, after a click on its summary.
type fold struct {
	Title string      `json:"title"`
	Open  bool        `json:"open"`
	Code  []shownCode `json:"code"` // the code blocks inside it
}

// shownCode is a code block as it is drawn: its box, and how wide its widest line is.
type shownCode struct {
	First  string `json:"first"`
	Height int    `json:"height"` // 0: not drawn
	Text   int    `json:"text"`   // characters of code
	Scroll int    `json:"scroll"` // the width its widest line needs, in CSS pixels
	Client int    `json:"client"` // the width the block shows
	Widest string `json:"widest"` // its widest line
}

const shownCodeJS = `(pre => {
	const code = pre.querySelector('code') || pre;
	const text = code.textContent.replace(/\n$/, '');
	const lines = text.split('\n');
	const widest = lines.reduce((a, b) => b.length > a.length ? b : a, '');
	const r = pre.getBoundingClientRect();
	return {first: lines[0].trim(), height: Math.round(r.height), text: text.trim().length,
		scroll: code.scrollWidth, client: code.clientWidth, widest: widest};
})`

// checkFolds opens the page's folds one by one, with the mouse, outer ones first, and checks
// each opened and shows code; then that every code block of the page fits its box.
func checkFolds(t *testing.T, bctx context.Context, where string) {
	t.Helper()
	start := time.Now()
	n, err := step(bctx, chromedp.Evaluate[int](`document.querySelectorAll('article details').length`))
	if err != nil {
		t.Errorf("%s: counting the folds: %v", where, err)
		return
	}
	clicked := 0
	for i := range n {
		nth := fmt.Sprintf(`document.querySelectorAll('article details')[%d]`, i)
		title, err := step(bctx, chromedp.Evaluate[string](nth+`.querySelector(':scope > summary').textContent.trim()`))
		if err != nil {
			t.Errorf("%s: fold %d has no title (<summary>): %v", where, i+1, err)
			continue
		}
		// One open from the start (???+, or inside a fold opened before) is no fold to
		// open: a click would close it. Its code counted as open above.
		if open, err := step(bctx, chromedp.Evaluate[bool](nth+`.open`)); err != nil || open {
			continue
		}
		if _, err := step(bctx, chromedp.Click(chromedp.JSPath(nth+`.querySelector(':scope > summary')`))); err != nil {
			t.Errorf("%s: clicking the fold %q: %v", where, title, err)
			continue
		}
		clicked++
		// A click opens a <details> at once; the poll is for a browser that draws it late.
		f, err := step(bctx, chromedp.Poll[fold](fmt.Sprintf(`(() => {
			const d = %s;
			if (!d.open) return null;
			return {title: d.querySelector(':scope > summary').textContent.trim(), open: true,
				code: [...d.querySelectorAll('pre')].map(%s)};
		})()`, nth, shownCodeJS), chromedp.WithPollingInterval(10*time.Millisecond),
			chromedp.WithPollingTimeout(2*time.Second)))
		switch {
		case err != nil:
			t.Errorf("%s: the fold %q did not open on a click: %v", where, title, err)
			continue
		case len(f.Code) == 0:
			t.Errorf("%s: the fold %q opened, and shows no code", where, title)
		}
		for _, c := range f.Code {
			if c.Height == 0 || c.Text == 0 {
				t.Errorf("%s: the fold %q opened, but its code block that begins %q is not drawn "+
					"(%d px high, %d characters)", where, title, c.First, c.Height, c.Text)
			}
		}
	}
	if clicked > 0 {
		t.Logf("%s: %d folds clicked open in %v", where, clicked, time.Since(start).Round(time.Millisecond))
	}
	shown, err := step(bctx, chromedp.Evaluate[[]shownCode](`[...document.querySelectorAll('article pre')].map(`+
		shownCodeJS+`)`))
	if err != nil {
		t.Errorf("%s: measuring the code blocks: %v", where, err)
		return
	}
	for _, c := range shown {
		if c.Scroll > c.Client+1 {
			t.Errorf("%s: a line is cut off in the code block that begins %q: its widest line, "+
				"%d characters, needs %d px and the block shows %d: %q", where, c.First,
				len([]rune(c.Widest)), c.Scroll, c.Client, strings.TrimSpace(c.Widest))
		}
	}
}

// step runs one action in the tab, with a step's time to take.
func step[T any](bctx context.Context, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(bctx, stepTimeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// checkAnchors checks that every link from a page of the nav to a #fragment of a page of the
// nav (itself included) leads to an element of that page with that id.
func checkAnchors(t *testing.T, base string, nav []navEntry, pages map[string]pageInfo) {
	t.Helper()
	checked := 0
	for _, e := range nav {
		seen := map[string]bool{}
		for _, l := range pages[e.Path].Links {
			u, err := url.Parse(l)
			if err != nil || u.Fragment == "" || u.Scheme+"://"+u.Host != base || seen[u.Path+"#"+u.Fragment] {
				continue
			}
			seen[u.Path+"#"+u.Fragment] = true
			target, ok := pages[u.Path]
			if !ok {
				continue // not a page of the nav: the chapters subtest reports what is missing
			}
			checked++
			if !slices.Contains(target.IDs, u.Fragment) {
				t.Errorf("%s links to %s#%s, and %s has no such anchor", e.Path, u.Path, u.Fragment, u.Path)
			}
		}
	}
	t.Logf("%d links to an anchor of a page checked", checked)
}
