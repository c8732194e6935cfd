"""make check-html: the judging on what a browser measured (no browser needed), the offline server and the
missing-browser message; one slow test drives the real headless Chromium over a two-page site."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from perlkit import htmlcheck
from perlkit.htmlcheck import (
    INSTALL_HINT,
    is_local,
    judge_figure,
    judge_page,
    png_dpi,
    raw_tex,
    redirect_target,
    serve,
    site_pages,
)

ORIGIN = "http://127.0.0.1:8123"


def _png(width: int, height: int, dpi: float | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, "PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
    return buffer.getvalue()


def test_raw_tex_finds_untypeset_math_but_not_prices_or_variables() -> None:
    texts = [r"a \(x^2\) b", r"display \[ y \] here", r"inline $h_{k}$ there", "$$a + b$$",
             "it costs $5 and $6", "set $PERLKIT_CACHE to a folder", r"a literal \ backslash"]
    assert raw_tex(texts) == [r"\(x^2\)", r"\[ y \]", "$h_{k}$", "$$a + b$$"]


def test_only_the_sites_own_server_and_inline_data_are_local() -> None:
    assert is_local(f"{ORIGIN}/book/index.html", ORIGIN)
    assert is_local("data:image/png;base64,AAAA", ORIGIN)
    assert not is_local("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", ORIGIN)
    assert not is_local("http://127.0.0.1:9999/other-server.js", ORIGIN)  # another port is another site


def test_judge_page_turns_measurements_into_failures_and_warnings() -> None:
    probe = {
        "scrollWidth": 577, "clientWidth": 390,
        "outside": [{"name": "code.literal", "what": "element", "by": 49}],
        "scrolling": [{"name": "div.output.text_html", "what": "table", "content": 697, "box": 688},
                      {"name": "pre#codecell0", "what": "code", "content": 900, "box": 688}],
        "mathUnrendered": [r"\(J = 7\)"], "mathErrors": ["Undefined control sequence \\foo"],
        "texts": ["left as $x_i$ in a table"],
        "widgets": [{"model": "abc", "rendered": False}, {"model": "def", "rendered": True}],
    }
    desk = judge_page("p.html", 1280, probe)
    kinds = sorted((f.kind, f.severity) for f in desk)
    assert kinds == [("math", "fail")] * 3 + [("overflow", "fail")] * 2 + [("scroll", "fail"), ("scroll", "warn"),
                                                                          ("widget", "fail")]
    phone = judge_page("p.html", 390, probe)
    assert [f.severity for f in phone if f.kind == "scroll"] == ["warn", "warn"]  # tables scroll inside, on a phone
    assert judge_page("p.html", 1280, {"scrollWidth": 1280, "clientWidth": 1280}) == []


def test_png_dpi_and_figure_scale() -> None:
    assert png_dpi(_png(40, 20, dpi=100)) == pytest.approx(100, abs=0.1)
    assert png_dpi(_png(40, 20)) is None
    assert png_dpi(b"GIF89a") is None
    image = {"src": "/_images/f.png", "natural": 1494, "displayed": 672.0}
    record, findings = judge_figure("p.html", 1280, image, 100.0)
    assert record["scale"] == pytest.approx(0.45, abs=1e-3)
    assert record["min_pt_for_9px"] == pytest.approx(14.4, abs=0.05)  # 9 px / (0.45 * 100 dpi / 72 pt per inch)
    assert [f.kind for f in findings] == ["figure-scale"]
    assert judge_figure("p.html", 390, image, 100.0)[1] == []  # on a phone every figure shrinks: reported only
    assert judge_figure("p.html", 1280, {**image, "displayed": 800.0}, None)[1] == []


def test_pages_redirects_and_the_local_server(tmp_path: Path) -> None:
    (tmp_path / "book").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/index.html" />')
    (tmp_path / "book" / "index.html").write_text("<html><body><main>hello</main></body></html>")
    (tmp_path / "_static" / "theme.html").write_text("<p>a template, not a page</p>")
    assert site_pages(tmp_path) == ["book/index.html", "index.html"]
    assert redirect_target((tmp_path / "index.html").read_text()) == "book/index.html"
    assert redirect_target((tmp_path / "book" / "index.html").read_text()) is None
    with serve(tmp_path) as origin:
        assert origin.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{origin}/book/index.html", timeout=10) as response:
            assert b"hello" in response.read()


def test_a_missing_browser_fails_with_the_install_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "index.html").write_text("<html></html>")
    assert htmlcheck.main([str(tmp_path), "--chromium", str(tmp_path / "no-chromium")]) == 2
    assert INSTALL_HINT in capsys.readouterr().err
    assert htmlcheck.main([str(tmp_path / "not-built")]) == 2
    assert "make html" in capsys.readouterr().err


GOOD = """<!doctype html><html><head><link rel="stylesheet" href="style.css"></head>
<body><main><article class="bd-article"><h1>Fine</h1><p>A figure:</p><img src="figure.png" style="width: 100px">
<a href="bad.html">next</a></article></main></body></html>"""

BAD = r"""<!doctype html><html><head><script src="https://cdn.example.invalid/lib.js"></script></head>
<body><main><article class="bd-article"><h1>Broken</h1>
<p>Math: <span class="math">\(x^2\)</span></p>
<img src="missing.png">
<div style="width: 2000px">a row wider than any column</div>
<div class="cell_output"><script type="application/vnd.jupyter.widget-view+json">{"model_id": "m1"}</script></div>
<script>console.error("boom")</script>
</article></main></body></html>"""


@pytest.mark.slow
@pytest.mark.skipif(not htmlcheck.CHROMIUM.exists(), reason=f"no {htmlcheck.CHROMIUM}: {INSTALL_HINT}")
def test_real_browser_on_a_two_page_site(tmp_path: Path) -> None:
    site = tmp_path / "html"
    site.mkdir()
    (site / "good.html").write_text(GOOD)
    (site / "bad.html").write_text(BAD)
    (site / "style.css").write_text("body { margin: 8px; }")
    (site / "figure.png").write_bytes(_png(400, 100, dpi=100))
    screens = tmp_path / "screens"
    report = htmlcheck.check_site(site, screens)
    assert report.pages == ["bad.html", "good.html"]
    good = [f for f in report.findings if f.page == "good.html"]
    assert [(f.kind, f.width) for f in good] == [("figure-scale", 1280)]  # 100 px of a 400 px figure
    for width in htmlcheck.WIDTHS:
        bad = {f.kind for f in report.failures if f.page == "bad.html" and f.width == width}
        assert bad == {"off-site", "asset", "js-error", "math", "widget", "overflow"}, width
        missing = [f for f in report.failures if f.page == "bad.html" and f.width == width and f.kind == "asset"]
        assert len(missing) == 1 and "missing.png -> HTTP 404" in missing[0].detail  # counted once
    assert sorted(p.name for p in screens.glob("*.png")) == [
        "bad-1280.png", "bad-390.png", "good-1280.png", "good-390.png"]
