"""MkDocs hook: the chapters' figures, filled in from the reader's own proof report.

A chapter never types a number that a proof observed. It writes a reference where the number
goes, and this hook puts in what the specs recorded in build/proof-report.json (or
$PORTPROOF_REPORT) on the machine that built the site:

    {{ limit.fd:accepted }}           the figure "accepted" that a passing spec of the claim
                                      limit.fd cited (lab.Cite in specs/lab/evidence.go)
    {{ port.same@ipv6:listener }}     the same, from the claim's spec labelled ipv6
    {{ limit.per-destination:default_size:, }}
                                      with a Python format spec: 28,232; ".2f" gives 1.02
    {{ machine:kernel }}              the suite's machine entry (evidence.Machine): kernel, arch,
                                      date, cpus, nofile, or a sysctl by name
    {{ machine }}                     "Linux <release>, <date>": whose kernel answered

A list prints its items joined by ", ", each with the format spec. Without a family a
claim's figures come from its IPv4 specs first, then from those that have no family, then
IPv6. Only passing specs count: a figure is what the kernel answered in a proof that held.

A reference the report cannot resolve, or a "{{" that is not a reference, fails the build
with the page, the claim and the key: a chapter never shows a number nobody measured. It
runs before the regions hook, so code brought in by region is never touched.
"""

import json
import os
import re

from mkdocs.exceptions import PluginError

REF = re.compile(r"\{\{\s*(?P<body>[^{}]*?)\s*\}\}")
BODY = re.compile(
    r"^(?P<claim>machine|[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)+)"
    r"(?:@(?P<family>ipv4|ipv6))?"
    r"(?::(?P<key>[A-Za-z0-9_.-]+)(?::(?P<fmt>[^:]*))?)?$"
)
FENCE = re.compile(r"^[ \t]*(```|~~~)")
FAMILY_ORDER = ("ipv4", "", "ipv6")

_report = {}


def _root(config):
    return os.path.dirname(os.path.abspath(config["config_file_path"]))


def report_path(root):
    p = os.environ.get("PORTPROOF_REPORT") or os.path.join("build", "proof-report.json")
    return p if os.path.isabs(p) else os.path.join(root, p)


def load(path):
    """Figures by claim and family, and the machine entry, from Ginkgo's JSON report."""
    try:
        with open(path, encoding="utf-8") as f:
            suites = json.load(f)
    except OSError as e:
        raise PluginError(f"figures: {path}: {e.strerror} (run the proofs first: make docs)") from e
    except ValueError as e:
        raise PluginError(f"figures: {path} is not a JSON report: {e}") from e
    if len(suites) != 1:
        raise PluginError(f"figures: {path}: want the report of one suite, found {len(suites)}")
    figures, machine = {}, None
    for spec in suites[0].get("SpecReports") or []:
        entries = spec.get("ReportEntries") or []
        for e in entries:
            if e.get("Name") == "machine" and machine is None:
                machine = json.loads(e["Value"]["AsJSON"])
        if spec.get("LeafNodeType") != "It" or spec.get("State") != "passed":
            continue
        labels = spec.get("LeafNodeLabels") or []
        family = next((l for l in labels if l in ("ipv4", "ipv6")), "")
        claims = [l[len("claim:"):] for l in labels if l.startswith("claim:")]
        for e in entries:
            if e.get("Name") != "figures":
                continue
            cited = json.loads(e["Value"]["AsJSON"]) or {}
            for claim in claims:
                figures.setdefault(claim, {}).setdefault(family, {}).update(cited)
    return figures, machine


def machine_figures(machine):
    if machine is None:
        return None
    flat = {k: v for k, v in machine.items() if k != "sysctls"}
    flat.update(machine.get("sysctls") or {})
    return flat


def render(value, fmt):
    if isinstance(value, list):
        return ", ".join(render(v, fmt) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if fmt:
        return format(value, fmt)
    return str(value)


def resolve(body, figures, machine, where):
    m = BODY.match(body)
    if not m:
        raise PluginError(f"{where}: {{{{ {body} }}}} is not a figure reference "
                          "(write {{ claim.id:key }}, {{ claim.id@ipv6:key:format }} or {{ machine:key }})")
    claim, family, key, fmt = m["claim"], m["family"], m["key"], m["fmt"] or ""
    if claim == "machine":
        flat = machine_figures(machine)
        if flat is None:
            raise PluginError(f"{where}: {{{{ {body} }}}}: the report has no machine entry (run the proofs again)")
        if key is None:
            return f"Linux {flat['kernel']}, {flat['date']}"
        if key not in flat:
            raise PluginError(f"{where}: {{{{ {body} }}}}: the machine entry has no {key!r} "
                              f"(it has: {', '.join(sorted(flat))})")
        return render(flat[key], fmt)
    if key is None:
        raise PluginError(f"{where}: {{{{ {body} }}}}: name a figure of claim {claim} ({{{{ {claim}:key }}}})")
    by_family = figures.get(claim)
    if not by_family:
        raise PluginError(f"{where}: {{{{ {body} }}}}: claim {claim} has no passing spec that cited figures in the report")
    order = (family,) if family else FAMILY_ORDER
    for fam in order:
        if key in by_family.get(fam, {}):
            try:
                return render(by_family[fam][key], fmt)
            except (ValueError, TypeError) as e:
                raise PluginError(f"{where}: {{{{ {body} }}}}: format {fmt!r} does not fit {by_family[fam][key]!r}: {e}") from e
    known = sorted({k for fam in order for k in by_family.get(fam, {})})
    raise PluginError(f"{where}: {{{{ {body} }}}}: claim {claim} cited no figure {key!r}"
                      f"{' over ' + family if family else ''} (it cited: {', '.join(known) or 'none'})")


def on_config(config):
    path = report_path(_root(config))
    _report["path"] = path
    _report["figures"], _report["machine"] = load(path)
    return config


def on_page_markdown(markdown, page, config, files):
    if markdown.startswith("<!-- Generated by"):
        return markdown  # the proof page is written from the same report, figures and all
    figures, machine = _report["figures"], _report["machine"]
    out, fenced = [], False
    for n, line in enumerate(markdown.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        if fenced:
            out.append(line)
            continue
        where = f"{page.file.src_path}:{n}"
        line = REF.sub(lambda m: resolve(m["body"], figures, machine, where), line)
        if "{{" in line or "}}" in line:
            raise PluginError(f"{where}: an unbalanced figure reference: {line.strip()!r}")
        out.append(line)
    return "\n".join(out) + "\n"
