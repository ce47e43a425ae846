#!/usr/bin/env python3
"""Check that the built site loads nothing from another host.

- HTML: no http:// or https:// anywhere (attributes, text, code samples), but for XML
  namespace names such as xmlns="http://www.w3.org/2000/svg", which are never fetched, and
  the href of a link (<a href="https://...">), which the browser follows only when the reader
  clicks it: the article and the RFCs the chapters cite are named that way.
- CSS: no url(...) or @import that leaves the site. (Font Awesome's licence comment in the
  theme's stylesheet names its home page; comments are not loaded.)
- SVG pictures: nothing but their namespace.
- JavaScript: the theme's own bundle (assets/javascripts/) carries URLs it uses only on
  request: mermaid from a CDN for a ```mermaid block, the GitHub API for a repo_url. The check
  makes sure no page asks for either; any other script with a URL fails.

Usage: python3 docs/check_offline.py [site]
"""
import os
import re
import sys

URL = re.compile(r'https?://[^\s"\'<>)\\`]+')
NAMESPACES = {
    "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink", "http://www.w3.org/1999/xhtml",
    "http://www.w3.org/1998/Math/MathML", "http://www.w3.org/XML/1998/namespace",
}
CSS_FETCH = re.compile(r'(?:url\(\s*["\']?|@import\s+["\']?)(?P<url>(?:https?:)?//[^"\')\s]+)', re.I)
LINK_OUT = re.compile(r'<a\s[^>]*?href="https?://[^"]*"')
CSS_COMMENT = re.compile(r'/\*.*?\*/', re.S)
THEME_JS = os.path.join("assets", "javascripts") + os.sep
# What would make the theme's bundle fetch from elsewhere, as it would appear in a page.
TRIGGERS = {'class="mermaid"': "a mermaid diagram (loads mermaid from unpkg.com)",
            'class="md-source"': "a repo_url (calls the GitHub or GitLab API)"}


def main(site):
    if not os.path.isdir(site):
        print(f"check_offline: no {site}/: build the site first (make docs)")
        return 1
    problems = []
    for dirpath, _, names in os.walk(site):
        for name in names:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, site)
            ext = os.path.splitext(name)[1]
            if ext not in (".html", ".css", ".js", ".svg"):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if ext == ".html":
                text = LINK_OUT.sub("<a", text)
            if ext in (".html", ".svg"):
                for u in URL.findall(text):
                    if u not in NAMESPACES:
                        problems.append(f"{rel}: {u}")
                for trigger, why in TRIGGERS.items():
                    if ext == ".html" and trigger in text:
                        problems.append(f"{rel}: {why}")
            elif ext == ".css":
                for m in CSS_FETCH.finditer(CSS_COMMENT.sub("", text)):
                    problems.append(f"{rel}: loads {m['url']}")
            elif not rel.startswith(THEME_JS) and URL.search(text):
                problems.append(f"{rel}: {URL.search(text).group(0)}")
    if problems:
        print("check_offline: the site refers to the outside world:")
        print("\n".join("  " + p for p in problems[:30]))
        return 1
    print(f"check_offline: no external URL in {site}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "site"))
