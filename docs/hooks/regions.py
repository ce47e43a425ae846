"""MkDocs hook: bring code into the chapters from the Go files, by named region.

A chapter writes, inside a fenced block, a snippet line such as

    --8<-- "refserver/steps.go:socket"

and this hook replaces it with the lines between `// --8<-- [start:socket]` and
`// --8<-- [end:socket]` in refserver/steps.go (paths from the repository's root), the
marker lines themselves left out and the code dedented. It runs on the page's Markdown,
before any extension sees it, so it works with Debian's pymdownx 9.5, which has no named
sections; the markers are the syntax current pymdownx.snippets reads natively.

A missing file, a missing region, or a snippet line it cannot read fails the build: a
chapter never shows stale or absent code. So does an embedded line wider than MAX_COLUMNS
(tabs counted as four columns, as the page shows them): about 88 columns fit a code block at
1280 pixels, and a line cut off hides the end of a comment or a failure message. Every such
line of the site is named, with its file, region, line number and page, before the build
fails. It also refuses to build before the proof page is generated (make docs does it in
order).
"""

import logging
import os
import re
import unicodedata

from mkdocs.exceptions import PluginError

SNIPPET = re.compile(r'^(?P<indent>[ \t]*)--8<--[ \t]+"(?P<path>[^":]+):(?P<region>[\w-]+)"[ \t]*$')
ANY_SNIPPET = re.compile(r'^[ \t]*-{1,3}8<-{1,3}')
MARKER = re.compile(r'^[ \t]*//[ \t]*--8<--[ \t]+\[(?P<kind>start|end):(?P<region>[\w-]+)\][ \t]*$')

# The widest embedded line, in columns, with tabs as four spaces.
MAX_COLUMNS = 100

# Files whose regions other branches of issue 11 are wrapping now. Their wide lines are
# listed (at INFO, so that a strict build passes) rather than fatal, until those branches
# merge: then this set is emptied and the check holds for every file.
WIDE_UNTIL_MERGE = set()

log = logging.getLogger("mkdocs.hooks.regions")

_cache = {}
_wide = []  # (path, region, line number, columns, text, page) of every embedded line too wide


def _root(config):
    return os.path.dirname(os.path.abspath(config["config_file_path"]))


def region(root, path, name):
    """The region's lines, marker lines removed, dedented, without blank edges."""
    return [text for _, text in numbered_region(root, path, name)]


def numbered_region(root, path, name):
    """The region's lines as region() shows them, each with its line number in the file."""
    full = os.path.normpath(os.path.join(root, path))
    if not full.startswith(root + os.sep):
        raise PluginError(f"snippet {path}:{name}: the path leaves the repository")
    if full not in _cache:
        try:
            with open(full, encoding="utf-8") as f:
                _cache[full] = f.read().splitlines()
        except OSError as e:
            raise PluginError(f"snippet {path}:{name}: {e.strerror}: {path}") from e
    lines = _cache[full]
    marks = {"start": [], "end": []}
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if m and m["region"] == name:
            marks[m["kind"]].append(i)
    for kind, at in marks.items():
        if len(at) > 1:
            raise PluginError(f'snippet {path}:{name}: "[{kind}:{name}]" stands {len(at)} times in '
                              f'{path} (lines {", ".join(str(i + 1) for i in at)}): a region is '
                              "marked once")
    start = marks["start"][0] if marks["start"] else None
    end = marks["end"][0] if marks["end"] and start is not None and marks["end"][0] > start else None
    if start is None or end is None:
        raise PluginError(f'snippet {path}:{name}: no region "{name}" in {path} '
                          f'(want "// --8<-- [start:{name}]" ... "// --8<-- [end:{name}]")')
    # Go is indented with tabs; show them as four spaces, as gofmt's readers expect.
    body = [(i + 1, lines[i].expandtabs(4)) for i in range(start + 1, end) if not MARKER.match(lines[i])]
    while body and not body[0][1].strip():
        body.pop(0)
    while body and not body[-1][1].strip():
        body.pop()
    # Dedent as textwrap.dedent does: the indent all non-blank lines share, blank lines empty.
    indents = [len(t) - len(t.lstrip(" ")) for _, t in body if t.strip()]
    cut = min(indents, default=0)
    return [(n, t[cut:] if t.strip() else "") for n, t in body]


def columns(text):
    """How many columns text takes in a monospace font: two for a wide East Asian character."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def on_config(config):
    _cache.clear()
    _wide.clear()
    proofs = os.path.join(config["docs_dir"], "proofs.md")
    if not os.path.exists(proofs):
        raise PluginError(f"{proofs} is generated: run `make docs` (or `go test ./specs/ && "
                          "go run ./specs/cmd/proofreport`) before `mkdocs build`")
    return config


def on_page_markdown(markdown, page, config, files):
    root = _root(config)
    out = []
    for n, line in enumerate(markdown.splitlines(), 1):
        m = SNIPPET.match(line)
        if m:
            for number, text in numbered_region(root, m["path"], m["region"]):
                if columns(text) > MAX_COLUMNS:
                    _wide.append((m["path"], m["region"], number, columns(text), text, page.file.src_path))
                out.append(m["indent"] + text if text else text)
            continue
        if ANY_SNIPPET.match(line):
            raise PluginError(f"{page.file.src_path}:{n}: a snippet line this hook cannot read: {line.strip()!r} "
                              '(write --8<-- "path/to/file.go:region")')
        out.append(line)
    return "\n".join(out) + "\n"


def on_env(env, config, files):
    """Every page's code is in by now: fail on the lines too wide, naming each one."""
    fatal, allowed = [], {}
    for path, name, number, width, text, page in sorted(set(_wide)):
        line = (f"{path}:{number} (region {name}, on {page}): {width} columns, "
                f"more than {MAX_COLUMNS}: {text.strip()[:72]!r}")
        if path in WIDE_UNTIL_MERGE:
            allowed.setdefault(path, []).append(line)
        else:
            fatal.append(line)
    for path, lines in allowed.items():
        log.info("%d embedded lines of %s are wider than %d columns, allowed until its branch "
                 "merges; the first: %s", len(lines), path, MAX_COLUMNS, lines[0])
    if fatal:
        raise PluginError(f"{len(fatal)} embedded lines wider than {MAX_COLUMNS} columns "
                          "(tabs as 4; wrap the comment or the message in the source):\n  "
                          + "\n  ".join(fatal))
    return env
