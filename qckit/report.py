"""Stakeholder reports: every executed notebook as HTML without code, and an index page.

Reports leave the team, queries are user text, and a received run's notebooks may have been edited, so
the pages are built to be inert:
- every Markdown cell, raw cell and HTML or Markdown output of a code cell is cleaned with bleach against
  one allow-list of the markup reports need (headings, paragraphs, tables, lists, code, emphasis, links to
  http/https/mailto and in-page #anchors, inline images from data: URIs); anything else is stripped:
  `<meta>`, `<iframe>`, `<form>`, `<object>`, `<embed>`, event attributes such as `onerror=`,
  `javascript:` and relative links. nbconvert's own `sanitize_html` is not used: its allow-list has no
  headings, paragraphs or table heads, so it shows the tables of pandas as markup;
- Markdown cells are rendered here (their attachments inlined, no local file read) and reach the
  template as finished HTML; outputs keep only the types a static page shows (text, HTML, LaTeX,
  PNG/JPEG/SVG pictures), image sizes only as numbers;
- every `<script>` the template would load is removed;
- each page carries a Content-Security-Policy that forbids scripts and any network fetch, so a page
  opens offline and a `<script>` or `onerror=` that slipped through still cannot run;
- the index page is written here with every value passed through `html.escape`;
- report files are written world-readable (`REPORT_FILE_MODE`, 0644) to be shared, whatever the umask.

Example:
    >>> from qckit.report import render_report
    >>> render_report("outputs/default-20261125-120000")
    PosixPath('outputs/default-20261125-120000/report/index.html')
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import bleach

from qckit.runs import Run, write_text_atomic

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)
_CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
# Scripts of the nbconvert template (require.js, MathJax from a CDN): not wanted offline. Only the
# template's own tags can match here; text from the data is escaped by the sanitiser before this runs.
_SCRIPT_RE = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_LINK_RE = re.compile(r"<link\b[^>]*href=\"https?://[^>]*>", re.IGNORECASE)
# Report files are meant to be read by others: 0644 whatever the umask (data and models keep the umask).
REPORT_FILE_MODE = 0o644


ALLOWED_TAGS = [
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "small", "span", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
]
ALLOWED_ATTRIBUTES = {
    "*": ["class", "id", "title"], "a": ["href"], "img": ["src", "alt", "width", "height"],
    "td": ["colspan", "rowspan"], "th": ["colspan", "rowspan"], "table": ["border"],
}
# Whole elements whose content is code or styling, removed with their content (bleach would keep
# the text of a stripped <style> block on the page). Outputs of pandas carry a <style scoped> block.
_DROP_BLOCKS_RE = re.compile(r"<(script|style|iframe|object|embed|template)\b[^>]*>.*?</\1\s*>",
                             re.IGNORECASE | re.DOTALL)


# How browsers and bleach read a URL: character references decoded, then controls, spaces and backticks
# ignored, case-insensitive.
_URL_IGNORED_RE = re.compile(r"[`\x00-\x20\x7f-\xa0\s]+")
LINK_SCHEMES = ("http", "https", "mailto")


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """bleach's attribute filter: the allow-list, with links to the web or the page, pictures inline."""
    if name not in ALLOWED_ATTRIBUTES["*"] and name not in ALLOWED_ATTRIBUTES.get(tag, ()):
        return False
    url = _URL_IGNORED_RE.sub("", html.unescape(value)).lower()
    if tag == "a" and name == "href":  # no relative links: on a file:// page they reach local files
        scheme, colon, _ = url.partition(":")
        return url.startswith("#") or (bool(colon) and scheme in LINK_SCHEMES)
    if tag == "img" and name == "src":
        return url.startswith("data:image/")
    return True


def clean_output_html(markup: str) -> str:
    """User-facing HTML reduced to the allow-list; scripts, handlers and foreign URLs removed."""
    markup = _DROP_BLOCKS_RE.sub("", markup)
    return bleach.clean(markup, tags=ALLOWED_TAGS, attributes=_allowed_attribute,
                        protocols=[*LINK_SCHEMES, "data"], strip=True, strip_comments=True)


# What a static report shows of an output; the rest (scripts, widgets, Mermaid source, which the
# template would insert unescaped) is dropped.
SHOWN_OUTPUT_TYPES = ("text/plain", "text/html", "text/latex", "image/png", "image/jpeg", "image/svg+xml")
_IMAGE_SIZE_KEYS = ("width", "height")


def _clean_outputs(cell) -> None:
    """Sanitise one code cell's outputs in place (Markdown outputs become sanitised HTML)."""
    import nbformat
    from nbconvert.filters import markdown2html

    kept = []
    for output in cell.get("outputs", []):
        if _is_script_output(output):
            continue
        if "data" in output:
            data = output.data
            if "text/markdown" in data:
                data["text/html"] = markdown2html(data.pop("text/markdown"))
            if "text/html" in data:
                data["text/html"] = clean_output_html(data["text/html"])
            for key in [k for k in data if k not in SHOWN_OUTPUT_TYPES]:
                del data[key]
            output.metadata = nbformat.from_dict(_image_metadata(output.get("metadata", {})))
        kept.append(output)
    cell.outputs = kept


def _image_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Output metadata as the template may use it: picture sizes only as numbers (it writes them unquoted),
    no `filenames` (they would point pictures at local files)."""
    def clean(meta: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in meta.items()
                if "/" not in k and k != "filenames" and (k not in _IMAGE_SIZE_KEYS or _is_number(v))}

    kept = clean(metadata)
    for mime in ("image/png", "image/jpeg"):
        if isinstance(metadata.get(mime), dict):
            kept[mime] = clean(metadata[mime])
    return kept


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def notebook_to_html(notebook: str | Path) -> str:
    """An executed notebook as a self-contained, script-free HTML page without code cells."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
        # Markdown cells arrive as cleaned HTML (below); embed_images off: a picture path in a received
        # notebook's Markdown would otherwise copy a local file into the report
        embed_images=False, filters={"markdown2html": _as_html},
    )
    nb = nbformat.read(str(notebook), as_version=4)
    nb.metadata.pop("widgets", None)  # widget state: script data, nothing a static report shows
    cells = []
    for cell in nb.cells:  # papermill's injected-parameters cell is code: hidden with the rest
        if cell.cell_type == "code":
            _clean_outputs(cell)
        elif cell.cell_type == "markdown":
            # nbconvert's own rendering (heading anchors, attachments as data: URIs), then the allow-list
            cell.source = clean_output_html(exporter.markdown2html({"cell": cell}, cell.source))
            cell.pop("attachments", None)
        elif cell.cell_type == "raw":
            cell.source = clean_output_html(cell.source)
        else:
            continue  # unknown cell types: the template would print their type unescaped
        cells.append(cell)
    nb.cells = cells
    body, _ = exporter.from_notebook_node(nb)
    return _harden(body)


def _as_html(markup: str) -> str:
    """The template's `markdown2html` filter: Markdown cells are rendered and cleaned before export."""
    return markup


def _is_script_output(output: Any) -> bool:
    data = output.get("data", {}) if isinstance(output, dict) else {}
    return any(k in data for k in ("application/javascript", "text/javascript"))


def _harden(page: str) -> str:
    page = _SCRIPT_RE.sub("", page)
    page = _LINK_RE.sub("", page)
    return re.sub(r"<head([^>]*)>", lambda m: f"<head{m.group(1)}>\n{_CSP_META}", page, count=1)


def render_report(run_dir: str | Path) -> Path:
    """Render every executed notebook of a run and write `report/index.html`; returns its path."""
    run = Run(run_dir)
    if not run.root.is_dir():
        raise FileNotFoundError(f"{run.root}: no such run directory")
    report_dir = run.path("report")
    report_dir.mkdir(parents=True, exist_ok=True)
    pages = []
    for nb in sorted(run.path("notebooks").glob("*.ipynb")):
        out = report_dir / f"{nb.stem}.html"
        write_text_atomic(out, notebook_to_html(nb), mode=REPORT_FILE_MODE)
        pages.append((nb.stem, out.name))
    index = report_dir / "index.html"
    write_text_atomic(index, render_index(run, pages), mode=REPORT_FILE_MODE)
    return index


def _status(run: Run) -> dict[str, Any]:
    path = run.path("run_status.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """A step's headline figures: its `headline` dict, else its top-level scalars."""
    if isinstance(metrics.get("headline"), dict):
        return metrics["headline"]
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) and not isinstance(v, bool)}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_index(run: Run, pages: list[tuple[str, str]]) -> str:
    e = html.escape
    status = _status(run)
    step_rows = "".join(
        f"<tr><td>{e(s['step'])}</td><td class='{e(s['status'])}'>{e(s['status'])}</td>"
        f"<td>{s.get('seconds') or 0:.1f} s</td><td>{e(str(s.get('peak_rss_mib') or '–'))}</td></tr>"
        for s in status.get("steps", [])
    )
    figures = []
    for step, metrics in run.all_metrics().items():
        rows = "".join(
            f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in _headline(metrics).items()
        )
        figures.append(f"<section class='step'><h3>{e(step)}</h3><table class='figures'>{rows}</table></section>")
    links = "".join(f"<li><a href='{e(href)}'>{e(name)}</a></li>" for name, href in pages)
    params_path = run.path("params.yaml")
    params_text = params_path.read_text(encoding="utf-8") if params_path.exists() else ""
    ok = status.get("ok")
    verdict = "completed" if ok else ("failed" if ok is False else "unknown")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{_CSP_META}
<title>qckit run {e(run.id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }}
td, th {{ border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }}
.failed {{ color: #b00; font-weight: bold; }} .done {{ color: #070; }} .skipped {{ color: #666; }}
pre {{ background: #f6f6f6; padding: 1rem; overflow-x: auto; }}
section.step {{ display: inline-block; vertical-align: top; margin-right: 2rem; }}
</style></head>
<body>
<h1>qckit run <code>{e(run.id)}</code></h1>
<p>Status: <strong class="{e(verdict)}">{e(verdict)}</strong> · finished {e(str(status.get('finished', '–')))}</p>
<h2>Headline figures</h2>
<div id="figures">{''.join(figures) or '<p>No step has written metrics yet.</p>'}</div>
<h2>Reports</h2>
<ul id="reports">{links or '<li>No executed notebooks.</li>'}</ul>
<h2>Steps</h2>
<table id="steps"><tr><th>step</th><th>status</th><th>time</th><th>peak MiB</th></tr>{step_rows}</table>
<h2>Parameters</h2>
<pre id="params">{e(params_text)}</pre>
</body></html>
"""
