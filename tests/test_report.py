"""Reports: code hidden, figures embedded, user text escaped, nothing runs, and it opens offline."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import chromium_binary, write_notebook

from qckit.pipeline import run_chain

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
