"""Reports: code hidden, figures embedded, user text escaped, nothing runs, and it opens offline; a run
received with an edited notebook renders as inert as one's own."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import chromium_binary, write_notebook
from PIL import Image

from qckit.pipeline import run_chain
from qckit.report import clean_output_html, render_report

PLANTED = [
    "<script>document.title='PWNED'</script>",
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">",
    "cheap <b onmouseover=alert(1)>phone</b> case",
]
SHOW_USER_TEXT = f"""
import pandas as pd
import matplotlib.pyplot as plt
from IPython.display import HTML, Markdown, display
from qckit.runs import Run
queries = {PLANTED!r}
df = pd.DataFrame({{"query": queries, "label": [1, 0, 1]}})
display(df)
display(Markdown("Top query: " + queries[0]))
display(HTML("<p>raw: " + queries[1] + "</p>"))
print(queries[0])
fig, ax = plt.subplots(figsize=(3, 2))
ax.bar(["a", "b"], [1, 2]); ax.set_title("planted figure")
plt.show()
Run(run_dir).write_metrics("01_show", {{"headline": {{"worst query": queries[0], "f1": 0.8123}}}})
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    nbdir = tmp / "notebooks"
    write_notebook(nbdir / "01_show.ipynb", ["print('visible output')", SHOW_USER_TEXT])
    params = tmp / "p.yaml"
    params.write_text("name: reporttest\n")
    result = run_chain(params, notebooks_dir=nbdir, outputs_dir=tmp / "out", run_id="r", progress=False)
    assert result.ok
    return result.report_index


def _scripts(html: str) -> list[str]:
    return re.findall(r"<script\b", html, flags=re.IGNORECASE)


def test_index_has_figures_links_and_escaped_text(report: Path):
    html = report.read_text()
    assert "<a href='01_show.html'>01_show</a>" in html
    assert "0.8123" in html and "reporttest" in html
    assert "&lt;script&gt;document.title=&#x27;PWNED&#x27;&lt;/script&gt;" in html
    assert not _scripts(html)
    assert "Content-Security-Policy" in html


def test_notebook_page_hides_code_embeds_figures_and_is_inert(report: Path):
    page = (report.parent / "01_show.html").read_text()
    assert "visible output" in page
    # tables and markdown render as markup, not as escaped source
    assert "<th>query</th>" in page.replace(' style="text-align: right;"', "") and "&lt;table" not in page
    assert "&lt;p&gt;" not in page and "<p>raw: " in page
    assert "plt.subplots" not in page and "write_metrics" not in page  # code cells hidden
    assert re.search(r"<img[^>]+src=\"data:image/png;base64,", page)
    assert not _scripts(page)
    assert not re.search(r"<img[^>]*onerror", page, flags=re.IGNORECASE)
    assert not re.search(r"<b[^>]*onmouseover", page, flags=re.IGNORECASE)
    assert not re.search(r"(src|href)=[\"']?https?://", page)  # opens offline: nothing fetched
    assert "Content-Security-Policy" in page


def _chromium(args: list[str], timeout: int = 90) -> subprocess.CompletedProcess:
    binary = chromium_binary()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(chromium_binary() is None, reason="Chromium not installed (make setup installs it with apt-get)")
@pytest.mark.parametrize("page", ["index.html", "01_show.html"])
def test_headless_browser_renders_and_planted_script_does_not_run(report: Path, page: str, tmp_path: Path):
    target = report.parent / page
    proc = _chromium([f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
                      "--dump-dom", target.as_uri()])
    dom = proc.stdout
    assert "<body" in dom, proc.stderr[-2000:]
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]  # onerror never fired
    title = re.search(r"<title>(.*?)</title>", dom, flags=re.DOTALL)
    assert title is None or "PWNED" not in title.group(1)
    assert "document.title" in dom  # the planted text is shown as text
    if page == "index.html":
        assert 'href="01_show.html"' in dom and "0.8123" in dom
    else:
        assert "data:image/png;base64," in dom
    shot = tmp_path / f"{page}.png"
    _chromium([f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,900",
               f"--screenshot={shot}", target.as_uri()])
    assert shot.exists() and shot.stat().st_size > 5000


# --- a received run whose executed notebook was edited -------------------------------------------------

def _png(color: tuple[int, int, int], size: int = 80) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


RED, GREEN = (255, 0, 0), (0, 160, 0)
EDITED_MARKDOWN = f"""# Edited heading

<meta http-equiv="refresh" content="0;url=file:///etc/passwd">

<iframe src="file:///etc/passwd"></iframe>

<form action="file:///etc/passwd"><input name="q"><button>send</button></form>

<img src=x onerror="document.body.setAttribute('data-pwned','1')">

<a href="javascript:document.body.setAttribute('data-pwned','2')">click me</a>
<a href="&#106;avascript:alert(1)">encoded</a> <a href="/etc/passwd">relative</a>

<object data="file:///etc/passwd"></object><embed src="file:///etc/passwd"> <b onclick="alert(1)">bold</b>

| col a | col b |
|---|---|
| 1 | 2 |

- item one
- item two

`inline code` *emphasis* **strong** [web](https://example.org/) [mail](mailto:team@example.org) [top](#Edited-heading)

![red square](data:image/png;base64,{_png(RED)}) ![green square](attachment:green.png) ![local](/etc/passwd.png)
"""


@pytest.fixture(scope="module")
def edited_page(report: Path, tmp_path_factory) -> Path:
    """The run of `report` as someone else may send it: its executed notebook edited, then re-rendered."""
    run_root = tmp_path_factory.mktemp("received") / "r"
    shutil.copytree(report.parent.parent, run_root)
    nb_path = run_root / "notebooks" / "01_show.ipynb"
    nb = nbformat.read(str(nb_path), as_version=4)
    markdown = nbformat.v4.new_markdown_cell(EDITED_MARKDOWN)
    markdown.attachments = {"green.png": {"image/png": _png(GREEN)}}
    raw = nbformat.v4.new_raw_cell('<meta http-equiv="refresh" content="0;url=file:///etc/group">raw text')
    code = nbformat.v4.new_code_cell("")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={
            "text/vnd.mermaid": "</pre><meta http-equiv='refresh' content='0;url=file:///etc/hosts'>",
            "text/plain": "mermaid source dropped"}),
        nbformat.v4.new_output("display_data", data={"image/png": _png(RED, 8)}, metadata={
            "image/png": {"width": "8 onerror=alert(1)"}, "filenames": {"image/png": "/etc/passwd"}}),
    ]
    nb.cells = [markdown, raw, code, *nb.cells]
    nbformat.write(nb, str(nb_path))
    render_report(run_root)
    return run_root / "report" / "01_show.html"


def test_edited_notebook_markdown_passes_the_allow_list(edited_page: Path):
    page = edited_page.read_text()
    body = page.split("<body", 1)[1]
    assert not re.search(r"http-equiv=[\"']?refresh", page, flags=re.IGNORECASE)
    for tag in ("iframe", "form", "input", "button", "object", "embed", "meta", "pre class=\"mermaid"):
        assert not re.search(rf"<{tag}\b", body, flags=re.IGNORECASE), tag
    assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", page, flags=re.IGNORECASE)  # no event attribute
    assert "javascript:" not in page.lower() and "file:///" not in page and "/etc/passwd" not in page
    assert not re.search(r"<a [^>]*href=\"(?!https?:|mailto:|#)", body)  # links: web, mail, in-page only
    assert not re.search(r"<img [^>]*src=\"(?!data:image/)", body)
    # what Markdown is for still renders
    assert re.search(r"<h1 id=\"Edited-heading\">Edited heading", body)
    assert "<th>col a</th>" in body and "<td>2</td>" in body and "<li>item one</li>" in body
    assert "<code>inline code</code>" in body and "<em>emphasis</em>" in body and "<strong>strong</strong>" in body
    assert '<a href="https://example.org/">web</a>' in body and '<a href="mailto:team@example.org">' in body
    assert '<a href="#Edited-heading">top</a>' in body
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", body)) >= 4  # 2 in Markdown, 2 outputs
    assert "click me" in body and "raw text" in body and "mermaid source dropped" in body
    # the unedited outputs are still there
    assert "visible output" in body and "<th>query</th>" in body.replace(' style="text-align: right;"', "")


@pytest.mark.parametrize("markup, kept", [
    ('<a href="https://example.org/x">w</a>', True), ('<a href="#sec">s</a>', True),
    ('<a href="mailto:a@b.org">m</a>', True), ('<a href=" JaVa\tScRiPt:alert(1)">j</a>', False),
    ('<a href="&#x6A;avascript:alert(1)">j</a>', False), ('<a href="data:text/html,x">d</a>', False),
    ('<a href="file:///etc/passwd">f</a>', False), ('<a href="../../x.html">r</a>', False),
    ('<a href="//evil.example/">p</a>', False), ('<img src="data:image/png;base64,AAAA">', True),
    ('<img src="data:text/html;base64,AAAA">', False), ('<img src="https://evil.example/x.png">', False),
])
def test_link_and_picture_urls(markup: str, kept: bool):
    cleaned = clean_output_html(markup)
    assert ("href=" in cleaned or "src=" in cleaned) is kept, cleaned


def _colour_pixels(png: Path, colour: tuple[int, int, int], tolerance: int = 24) -> int:
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    return int(np.all(np.abs(pixels - np.array(colour)) <= tolerance, axis=-1).sum())


@pytest.mark.skipif(chromium_binary() is None, reason="Chromium not installed (make setup installs it with apt-get)")
def test_headless_browser_stays_on_an_edited_report_and_shows_its_pictures(edited_page: Path, tmp_path: Path):
    proc = _chromium([f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                      "--dump-dom", edited_page.as_uri()])
    dom = proc.stdout
    assert "<body" in dom, proc.stderr[-2000:]
    # no navigation: still the report (its title and heading), not /etc/passwd, /etc/group or /etc/hosts
    title = re.search(r"<title>.*?</title>", edited_page.read_text()).group(0)
    assert title in dom and "Edited heading" in dom and "visible output" in dom, dom[:2000]
    assert "root:" not in dom and "localhost" not in dom
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]
    assert "<iframe" not in dom and "<form" not in dom
    # the pictures decode: the Markdown's red data: image and green attachment, and the matplotlib bars
    shot = tmp_path / "edited.png"
    _chromium([f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,2400", "--hide-scrollbars",
               f"--screenshot={shot}", edited_page.as_uri()])
    assert shot.exists(), "no screenshot"
    assert _colour_pixels(shot, RED) >= 80 * 80 * 0.9
    assert _colour_pixels(shot, GREEN) >= 80 * 80 * 0.9
    assert _colour_pixels(shot, (31, 119, 180)) >= 500  # matplotlib's first colour: the planted figure's bars
