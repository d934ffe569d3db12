"""What the interop commands print: the VASP suite as a table, as JSON and as an HTML report a
partner can send to a carrier; the MMSC probe as a matrix, as JSON, and its dialect as TOML.

Everything that came from the peer is already cut and cleaned (``peer_text``) when it reaches
here; the HTML report escapes every value besides, and holds no script and no external link.
"""

from __future__ import annotations

import html
from typing import Any

from mm7 import __version__
from mm7.interop.dialect_toml import dialect_table
from mm7.interop.mmsc_probe import ProbeResult, Tried
from mm7.interop.vasp_suite import SuiteResult

__all__ = [
    "probe_comments",
    "probe_json",
    "probe_matrix",
    "probe_toml",
    "suite_html",
    "suite_json",
    "suite_table",
]


# --------------------------------------------------------------------------- the VASP suite


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def suite_table(result: SuiteResult) -> str:
    """One line per case (ok/FAIL, time, name, the problem), notes indented under it, and a
    closing count."""
    width = max((len(r.name) for r in result.results), default=0)
    lines = [
        f"mm7 interop vasp {result.url}: {_count(len(result.results), 'case')}, "
        f"answers due within {result.timeout:g} s"
    ]
    for r in result.results:
        mark = "ok  " if r.ok else "FAIL"
        line = f"{mark} {r.elapsed_ms:8.1f} ms  {r.name:<{width}}"
        if r.problem:
            line += f"  {r.problem}"
        lines.append(line.rstrip())
        lines.extend(f"{'':>17}note: {n}" for n in r.notes)
    lines.append(f"{result.passed} passed, {result.failed} failed")
    return "\n".join(lines) + "\n"


def suite_json(result: SuiteResult) -> dict[str, Any]:
    """``{"passed": N, "failed": M, "cases": [{"name", "ok", "problem", "version",
    "elapsed_ms", "notes"}]}``."""
    return {
        "passed": result.passed,
        "failed": result.failed,
        "cases": [
            {
                "name": r.name,
                "ok": r.ok,
                "problem": r.problem,
                "version": r.version,
                "elapsed_ms": r.elapsed_ms,
                "notes": list(r.notes),
            }
            for r in result.results
        ],
    }


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #ddd;
  vertical-align: top; }
td.num { text-align: right; white-space: nowrap; } .name { font-family: monospace; }
tr.fail td { background: #fdecea; } .ok { color: #1b7f3b; font-weight: bold; }
.bad { color: #b3261e; font-weight: bold; } .note { color: #666; font-size: .9em; }
.summary { font-size: 1.1em; margin: 1em 0; }
"""


def suite_html(result: SuiteResult) -> str:
    """A self-contained HTML page: the target, the date, the counts and every case."""
    e = html.escape
    verdict = "PASSED" if result.failed == 0 else "FAILED"
    rows = []
    for r in result.results:
        notes = "".join(f'<div class="note">note: {e(n)}</div>' for n in r.notes)
        mark = '<span class="ok">ok</span>' if r.ok else '<span class="bad">FAIL</span>'
        rows.append(
            f'<tr class="{"pass" if r.ok else "fail"}"><td>{mark}</td>'
            f'<td class="name">{e(r.name)}</td><td>{e(r.what)}</td>'
            f'<td class="num">{r.elapsed_ms:.1f} ms</td>'
            f"<td>{e(r.problem or '')}{notes}</td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>MM7 VASP interop report: {e(result.url)}</title><style>{_STYLE}</style></head>
<body>
<h1>MM7 VASP interop report: {verdict}</h1>
<p class="summary">{result.passed} passed, {result.failed} failed,
of {len(result.results)} cases.</p>
<table>
<tr><th>Endpoint</th><td class="name">{e(result.url)}</td></tr>
<tr><th>Run</th><td>{e(result.started.strftime("%Y-%m-%d %H:%M:%S UTC"))}</td></tr>
<tr><th>Answers due within</th><td>{result.timeout:g} s</td></tr>
<tr><th>Checked</th><td>HTTP 200 (500 or 200 for the error cases), a SOAP answer that can be
read, the response operation due, TransactionID and namespace echoed, the MM7 status due
(1000 unless the case says otherwise)</td></tr>
<tr><th>Tool</th><td>mm7 {e(__version__)}, <span class="name">mm7 interop vasp</span></td></tr>
</table>
<h2>Cases</h2>
<table>
<tr><th></th><th>Case</th><th>What was sent</th><th>Time</th><th>Problem</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""


# --------------------------------------------------------------------------- the MMSC probe


def _status(t: Tried) -> str:
    if t.status is not None:
        return str(t.status)
    return f"HTTP {t.http_status}" if t.http_status is not None else "-"


def _sent(result: ProbeResult) -> int:
    return sum(1 for t in result.tried if t.sent)


def _verdict(t: Tried) -> str:
    """accepted, refused (the MMSC answered no), failed (no connection), not sent."""
    if t.accepted:
        return "accepted"
    if not t.sent:
        return "not sent"
    return "refused " if t.reached else "failed  "


def probe_matrix(result: ProbeResult) -> str:
    """Every variant tried (accepted or refused, status, reason), the base pair and findings."""
    width = max((len(t.variant.name) for t in result.tried), default=0)
    unreached = sum(1 for t in result.tried if t.sent and not t.reached)
    not_sent = len(result.tried) - _sent(result)
    refused = len(result.refused) - unreached - not_sent
    lines = [
        f"mm7 interop mmsc {result.url} --to {result.to}: {_count(_sent(result), 'SubmitReq')}, "
        f"{len(result.accepted)} accepted, {refused} refused"
        + (f", {unreached} could not connect" if unreached else "")
        + (f", {not_sent} not sent" if not_sent else "")
    ]
    for t in result.tried:
        verdict = _verdict(t)
        line = f"  {t.variant.name:<{width}}  {verdict}  {_status(t):<9}  {t.reason or ''}"
        lines.append(line.rstrip())
    if result.base is None:
        lines.append("no namespace/MM7Version pair was accepted: no packaging variant was sent")
    else:
        lines.append(f"base pair: {result.base.pair} (the newest accepted)")
        lines.extend(f"refused: {finding}" for finding in result.findings)
    return "\n".join(lines) + "\n"


def probe_comments(result: ProbeResult, name: str) -> list[str]:
    """The comment lines above the recommended dialect: where it came from and the findings."""
    comments = [
        f"Probed {result.url} with mm7 interop mmsc on "
        f"{result.started:%Y-%m-%d %H:%M} UTC: {_sent(result)} SubmitReqs, "
        f"{len(result.accepted)} accepted.",
        f'Paste into conf/dialects.toml and name it in a link: dialect = "{name}".',
    ]
    comments.extend(f"Refused: {f}" for f in result.findings)
    if result.smil_required:
        comments.append(
            "SMIL is required: give the link a content profile with smil_required = true "
            '(e.g. profile = "aggregator-smil", whose too_big = "link" needs [hosting] enabled; '
            'or a copy of it in profiles/ with too_big = "refuse").'
        )
    return comments


def probe_toml(result: ProbeResult, name: str) -> str | None:
    """The recommended dialect as a TOML table with its comments; None when there is none."""
    keys = result.dialect
    if keys is None:
        return None
    return dialect_table(name, keys, probe_comments(result, name))


def probe_json(result: ProbeResult) -> dict[str, Any]:
    """``{"accepted": [variant, ...], "refused": [{"variant", "status", "http_status",
    "reason"}], "dialect": {...} | null}``."""
    return {
        "accepted": [t.variant.name for t in result.accepted],
        "refused": [
            {
                "variant": t.variant.name,
                "status": t.status,
                "http_status": t.http_status,
                "reason": t.reason,
            }
            for t in result.refused
        ],
        "dialect": result.dialect,
    }
