"""Reports: code hidden, figures embedded, user text escaped, nothing runs, and it opens offline; a run
received with an edited notebook renders as inert as one's own."""
from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import chromium_binary, write_notebook
from PIL import Image

from qckit.analysis import metrics_by
from qckit.calibrate import calibrate
from qckit.cli import main as cli_main
from qckit.pipeline import run_chain
from qckit.plots.evaluation import f1_by_language
from qckit.plots.style import TASK_PALETTE, ZERO_SHOT_COLOR
from qckit.report import (
    CSP,
    FLOOR_MARGIN,
    REPORT_FILE_MODE,
    bundle_path,
    clean_output_html,
    render_report,
    step_anchor,
    verdict_lines,
)
from qckit.runs import Run, write_json_atomic

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


def _dev_predictions(learned: bool, seed: int = 0) -> pd.DataFrame:
    """Dev predictions of two tasks and three languages (de zero-shot); ``learned``: scores follow the
    labels, else every pair gets the same score."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in ("QC", "QI"):
        for lang in ("en", "fr", "de"):
            for q in range(12):
                for k in range(5):
                    label = int(rng.random() < 0.6)
                    score = (0.65 * label + 0.35 * rng.random()) if learned else 0.5
                    rows.append({"id": len(rows), "task": task, "language": lang, "query": f"{lang} query {q}",
                                 "target": f"target {k}", "label": label, "origin": "original", "score": score})
    return pd.DataFrame(rows)


def write_step_results(run: Run, *, learned: bool = True) -> dict:
    """What steps 01-06 leave in a run for the index: dev predictions, the calibration (computed by the
    kit on them), the zero-shot languages, the data steps' headlines. Returns the calibration metrics."""
    dev = _dev_predictions(learned)
    run.path("predictions").mkdir(parents=True, exist_ok=True)
    dev.to_parquet(run.path("predictions", "dev.parquet"), index=False)
    run.write_metrics("01_data_audit", {"rows": {"train": {"total": 400}}, "zero_shot_languages": ["de"],
                                        "zero_shot_languages_by_task": {"QC": ["de"], "QI": ["de"]},
                                        "headline": {"rows": 580, "zero_shot_languages": "de"}})
    run.write_metrics("02_translation", {"enabled": True, "headline": {"translated_rows": 60}})
    run.write_metrics("03_negative_mining", {"enabled": True, "headline": {"mined_negatives": 150}})
    run.write_metrics("04_noise_detection", {"enabled": True, "action": "remove", "rows": 610, "rows_after": 570,
                                             "headline": {"flagged": 40}})
    calibration = calibrate(dev, n_bootstrap=20, folds=3)
    run.write_metrics("06_calibration", calibration)
    return calibration


def _report_cli(run_root: Path) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["report", str(run_root), "--bundle"]) == 0
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A run of one purpose-built notebook, with what steps 01-06 would leave beside it, rendered by
    `qckit report RUN --bundle`."""
    tmp = tmp_path_factory.mktemp("report")
    nbdir = tmp / "notebooks"
    write_notebook(nbdir / "01_show.ipynb", ["print('visible output')", SHOW_USER_TEXT])
    params = tmp / "p.yaml"
    params.write_text("name: reporttest\n")
    result = run_chain(params, notebooks_dir=nbdir, outputs_dir=tmp / "out", run_id="r", progress=False,
                       report=False)
    assert result.ok
    write_step_results(result.run, learned=True)
    index = result.run.path("report", "index.html")
    assert _report_cli(result.run.root) == [str(index), f"bundle: {bundle_path(result.run.root)}"]
    return index


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


# --- the stakeholder's index: verdicts, pictures, the one-file report ------------------------------------

def test_verdict_of_a_model_above_the_floor_judges_the_held_out_f1():
    qc, qi = verdict_lines({"tasks": {
        "QI": {"f1": 0.801, "all_positive_f1": 0.79},  # no held-out F1: the F1 at the fitted threshold
        "QC": {"f1": 0.90, "f1_held_out_threshold": 0.853, "all_positive_f1": 0.791},
    }})
    assert (qc.task, qc.kind, qi.task, qi.kind) == ("QC", "learned", "QI", "learned")
    assert qc.text == "QC: F1 0.85 on dev, against 0.79 if every pair were called relevant: +6 points."
    assert qi.text == "QI: F1 0.80 on dev, against 0.79 if every pair were called relevant: +1 point."


@pytest.mark.parametrize("f1, floor, text", [
    (0.7722, 0.7722, "QC: F1 0.77 on dev, the same as calling every pair relevant (0.77): "
                     "the model learned nothing usable."),
    (0.7722 + FLOOR_MARGIN * 0.9, 0.7722, "QC: F1 0.78 on dev, the same as calling every pair relevant (0.77): "
                                          "the model learned nothing usable."),
    (0.7385, 0.7826, "QC: F1 0.74 on dev, 4 points below calling every pair relevant (0.78): "
                     "the model learned nothing usable."),
])
def test_verdict_of_a_model_at_or_below_the_floor_says_it_learned_nothing(f1, floor, text):
    (v,) = verdict_lines({"tasks": {"QC": {"f1": 0.95, "f1_held_out_threshold": f1, "all_positive_f1": floor}}})
    assert (v.kind, v.text) == ("floor", text)


def test_verdict_says_plainly_when_metrics_are_missing():
    failed = {"ok": False, "steps": [{"step": "01_data_audit", "status": "done"},
                                     {"step": "05_fine_tuning", "status": "failed"}]}
    partial = {"ok": True, "steps": [{"step": "01_data_audit", "status": "done"}]}
    assert [v.text for v in verdict_lines(None, failed)] == [
        "No verdict: the run failed at step 05_fine_tuning before the model could be judged."]
    assert [v.text for v in verdict_lines(None, partial)] == [
        "No verdict: step 06_calibration has not run, so there is no calibrated model to judge."]
    (v,) = verdict_lines(None)
    assert v.kind == "missing" and "metrics of step 06_calibration are missing" in v.text
    qc, qi = verdict_lines({"tasks": {"QC": {"f1": 0.9, "all_positive_f1": 0.8}, "QI": {"all_positive_f1": 0.8}}})
    assert qc.kind == "learned" and qi.kind == "missing" and qi.text.startswith("QI: no verdict")


def _pictures(page: str) -> dict[str, np.ndarray]:
    """The index's pictures by figure id, decoded from their data: URIs."""
    found = re.findall(r"<figure id='([^']+)'><img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    return {fid: np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")) for fid, b64 in found}


def test_index_opens_with_verdicts_then_decodable_pictures(report: Path):
    page = report.read_text()
    calibration = Run(report.parent.parent).read_metrics("06_calibration")
    verdicts = verdict_lines(calibration)
    assert [v.kind for v in verdicts] == ["learned", "learned"]
    for v in verdicts:
        assert f"<li class='learned'>{v.text}</li>" in page
    # the order a stakeholder reads: verdict, pictures, then the tables and links of before
    positions = [page.index(marker) for marker in ('id="verdicts"', 'id="pictures"', 'id="figures"', 'id="reports"')]
    assert positions == sorted(positions)
    pictures = _pictures(page)
    assert list(pictures) == ["picture-languages", "picture-steps", "picture-times"]
    for fid, pixels in pictures.items():
        height, width, _ = pixels.shape
        assert 300 <= width <= 1000 and 100 <= height <= 500, (fid, pixels.shape)  # small figures
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, fid  # not blank
    assert "Not shown" not in page


def test_index_of_a_run_at_the_floor_and_of_a_failed_run(tmp_path: Path):
    run = Run(tmp_path / "floor").ensure()
    write_step_results(run, learned=False)  # one score for every pair: the model calls them all alike
    index = render_report(run.root)
    page = index.read_text()
    assert "<li class='floor'>QC: F1 0.7" in page and "the model learned nothing usable" in page
    assert "<li class='floor'>QI: F1 0.7" in page and "class='learned'" not in page
    assert "picture-languages" in page and not bundle_path(run.root).exists()  # no bundle unless asked

    failed = Run(tmp_path / "failed").ensure()
    write_json_atomic(failed.path("run_status.json"), {"ok": False, "steps": [
        {"step": "01_data_audit", "status": "done", "seconds": 3.0},
        {"step": "05_fine_tuning", "status": "failed", "seconds": 1.5}]})
    page = render_report(failed.root).read_text()
    assert "<li class='missing'>No verdict: the run failed at step 05_fine_tuning" in page
    assert list(_pictures(page)) == ["picture-times"]
    assert "Not shown: F1 per language" in page and "data steps" in page


def test_f1_by_language_marks_the_zero_shot_languages():
    table = metrics_by(_dev_predictions(True), ["task", "language"], thresholds={"QC": 0.5, "QI": 0.5})
    fig = f1_by_language(table, zero_shot={"QC": ["de"], "QI": []})
    try:
        qc, qi = fig.axes
        colours = {t.get_text(): matplotlib.colors.to_hex(t.get_color()) for t in qc.get_xticklabels()}
        assert colours["de"] == ZERO_SHOT_COLOR and colours["en"] != ZERO_SHOT_COLOR
        assert all(matplotlib.colors.to_hex(t.get_color()) != ZERO_SHOT_COLOR for t in qi.get_xticklabels())
        assert [p.get_hatch() for p in qc.patches] == [None, None, "///"]
        assert "zero-shot language (no training rows)" in [t.get_text() for t in fig.legends[0].get_texts()]
    finally:
        plt.close(fig)


def test_bundle_is_one_offline_file_with_every_page(report: Path):
    bundle = bundle_path(report.parent.parent)
    assert bundle == report.parent / "r-report.html"
    assert os.stat(bundle).st_mode & 0o777 == REPORT_FILE_MODE
    page = bundle.read_text()
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert not _scripts(page) and not re.search(r"<(link|iframe|object|embed)\b", page, flags=re.IGNORECASE)
    # every step page's content: its text and its pictures; and the index's verdicts and pictures
    step_pages = sorted(p for p in report.parent.glob("*.html") if p not in (report, bundle))
    assert [p.stem for p in step_pages] == ["01_show"]
    for step in step_pages:
        assert f"id='{step_anchor(step.stem)}'" in page
        for picture in re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", step.read_text()):
            assert picture in page
    assert "visible output" in page and "&lt;script&gt;document.title=&#x27;PWNED&#x27;" in page
    assert list(_pictures(page)) == ["picture-languages", "picture-steps", "picture-times"]
    assert "+" in page.split("id=\"verdicts\"", 1)[1].split("</ul>", 1)[0]
    # links only in-page, each to an anchor that exists once; pictures only inline
    ids = [m[1] for m in re.findall(r"\sid=([\"'])(.*?)\1", page)]
    assert len(ids) == len(set(ids))
    hrefs = [m[1] for m in re.findall(r"\shref=([\"'])(.*?)\1", page)]
    assert hrefs and all(h.startswith("#") and h[1:] in ids for h in hrefs), hrefs
    assert f"#{step_anchor('01_show')}" in hrefs
    assert all(m[1].startswith("data:image/") for m in re.findall(r"\ssrc=([\"'])(.*?)\1", page))


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
        assert all(f'id="{fid}"' in dom for fid in ("picture-languages", "picture-steps", "picture-times"))
    else:
        assert "data:image/png;base64," in dom
    shot = tmp_path / f"{page}.png"
    _chromium([f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,2200", "--hide-scrollbars",
               f"--screenshot={shot}", target.as_uri()])
    assert shot.exists() and shot.stat().st_size > 5000
    if page == "index.html":  # the pictures decoded and drawn: the colours of their bars are on screen
        # bars of the tasks (F1 per language), of rows added and removed (step effects)
        for colour, least in ((TASK_PALETTE["QC"], 5000), (TASK_PALETTE["QI"], 5000), ("#55a868", 500),
                              ("#c44e52", 500)):
            rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
            assert _colour_pixels(shot, rgb, tolerance=12) >= least, colour


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
