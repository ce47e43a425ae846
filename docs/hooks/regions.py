"""MkDocs hook: bring code into the chapters from the Go files, by named region.

A chapter writes, inside a fenced block, a snippet line such as

    --8<-- "refserver/steps.go:socket"

and this hook replaces it with the lines between `// --8<-- [start:socket]` and
`// --8<-- [end:socket]` in refserver/steps.go (paths from the repository's root), the
marker lines themselves left out and the code dedented. It runs on the page's Markdown,
before any extension sees it, so it works with Debian's pymdownx 9.5, which has no named
sections; the markers are the syntax current pymdownx.snippets reads natively.

A missing file, a missing region, or a snippet line it cannot read fails the build: a
chapter never shows stale or absent code. It also refuses to build before the proof page is
generated (make docs does it in order).
"""

import os
import re
import textwrap

from mkdocs.exceptions import PluginError

SNIPPET = re.compile(r'^(?P<indent>[ \t]*)--8<--[ \t]+"(?P<path>[^":]+):(?P<region>[\w-]+)"[ \t]*$')
ANY_SNIPPET = re.compile(r'^[ \t]*-{1,3}8<-{1,3}')
MARKER = re.compile(r'^[ \t]*//[ \t]*--8<--[ \t]+\[(?P<kind>start|end):(?P<region>[\w-]+)\][ \t]*$')

_cache = {}


def _root(config):
    return os.path.dirname(os.path.abspath(config["config_file_path"]))


def region(root, path, name):
    """The region's lines, marker lines removed, dedented, without blank edges."""
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
    start = end = None
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if not m or m["region"] != name:
            continue
        if m["kind"] == "start" and start is None:
            start = i
        elif m["kind"] == "end" and start is not None:
            end = i
            break
    if start is None or end is None:
        raise PluginError(f'snippet {path}:{name}: no region "{name}" in {path} '
                          f'(want "// --8<-- [start:{name}]" ... "// --8<-- [end:{name}]")')
    body = [l for l in lines[start + 1:end] if not MARKER.match(l)]
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    # Go is indented with tabs; show them as four spaces, as gofmt's readers expect.
    text = textwrap.dedent("\n".join(l.expandtabs(4) for l in body))
    return text.splitlines()


def on_config(config):
    _cache.clear()
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
            out.extend(m["indent"] + l if l else l for l in region(root, m["path"], m["region"]))
            continue
        if ANY_SNIPPET.match(line):
            raise PluginError(f"{page.file.src_path}:{n}: a snippet line this hook cannot read: {line.strip()!r} "
                              '(write --8<-- "path/to/file.go:region")')
        out.append(line)
    return "\n".join(out) + "\n"
