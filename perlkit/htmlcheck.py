"""Read the built book the way a reader does: every page in a real headless Chromium, offline, on a desk and a phone.

``make check-html`` (``python -m perlkit.htmlcheck _build/html``) serves the site from a localhost HTTP server that
the check starts itself, opens each page at 1280 and 390 CSS px with Debian's ``/usr/bin/chromium`` (driven by
Playwright; never ``playwright install``), blocks every request that leaves localhost, and reports:

* failures: a JavaScript error (console or uncaught), an asset that does not load, a request off the site, math
  left as raw TeX or a MathJax error, a widget that does not render, and content wider than its column (the page
  scrolls sideways, or an element sticks out of the article; a table or figure that needs its own scroll bar at
  1280 px);
* warnings: a table or code block that scrolls inside its wrapper at 390 px (code blocks at any width), and a raster
  figure shown at less than half its pixel width (its text shrinks with it). For each figure the report gives the
  scale (displayed / natural width) and, from the PNG's dpi, the smallest font size (pt) that still renders at
  9 px; the font sizes a figure was drawn with are not in the PNG, so that last step is the reader's.

Screenshots (full page, each width) and ``report.json`` go to ``--screens``. The judging is plain Python on what
the browser measured, so tests cover it without a browser.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import functools
import http.server
import json
import re
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "sudo apt-get install chromium chromium-driver"
WIDTHS = (1280, 390)
DESK_WIDTH = 1280
HEIGHT = 900
#: the flags that work on these machines (Playwright adds --headless and --no-sandbox, and a fresh profile folder)
CHROMIUM_FLAGS = (
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # a second wall behind the request router: no host name but localhost resolves
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)
#: a figure shown below this fraction of its pixel width is flagged (its text shrinks with it)
MIN_FIGURE_SCALE = 0.5
#: the smallest text size, in CSS px, a figure's axis text should render at
MIN_TEXT_PX = 9.0
#: folders of the built site that hold assets, not pages
NOT_PAGES = ("_static", "_sources", "_images", "_downloads")
#: raw TeX that MathJax should have typeset: \( \) or \[ \], $$...$$, or $...$ with TeX inside
_RAW_TEX = re.compile(r"\\\(.+?\\\)|\\\[.+?\\\]|\$\$.+?\$\$"
                      r"|(?<![\\$\w])\$(?=\S)[^$\n]*?[\\^_{}][^$\n]*?(?<=\S)\$(?!\w)", re.S)
_SLOW = 30_000  # ms: the longest a page may take to load, typeset and render its widgets


@dataclass(frozen=True)
class Finding:
    """One problem on one page at one width."""

    kind: str  # js-error | asset | off-site | math | widget | overflow | scroll | figure-scale
    severity: str  # fail | warn
    page: str
    width: int
    detail: str


@dataclass
class Report:
    """Everything one run found, and the figures it measured."""

    pages: list[str] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[Finding]:
        """The findings that fail the check."""
        return [f for f in self.findings if f.severity == "fail"]

    def summary(self) -> str:
        """Counts per kind and severity, every failure, and the warnings one line per page, kind and width."""
        counts = Counter((f.severity, f.kind) for f in self.findings)
        lines = [f"{len(self.pages)} pages x {len(self.widths)} widths in {self.seconds:.0f} s: "
                 f"{len(self.failures)} failures, {len(self.findings) - len(self.failures)} warnings"]
        lines += [f"  {sev:4} {kind:13} {n}" for (sev, kind), n in sorted(counts.items())]
        lines += [f"FAIL {f.kind:13} {f.page} @{f.width}: {f.detail}" for f in self.failures]
        warned: dict[tuple[str, str, int], list[Finding]] = {}
        for f in self.findings:
            if f.severity == "warn":
                warned.setdefault((f.page, f.kind, f.width), []).append(f)
        for (page, kind, width), group in sorted(warned.items()):
            more = f" (and {len(group) - 1} more)" if len(group) > 1 else ""
            lines.append(f"warn {kind:13} {page} @{width}: {group[0].detail}{more}")
        return "\n".join(lines)


class CheckError(RuntimeError):
    """The check cannot run (no browser, no Playwright, no site)."""


# ----------------------------------------------------------------------------------------------- pure judging
def site_pages(site: Path) -> list[str]:
    """Every HTML page of the built site, as paths relative to its root (asset folders left out)."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not set(p.relative_to(site).parts[:-1]) & set(NOT_PAGES))


def redirect_target(html: str) -> str | None:
    """The target of a bare meta-refresh page (Jupyter Book's root index.html), else None."""
    found = re.search(r'http-equiv="Refresh"\s+content="\d+;\s*url=([^"]+)"', html, flags=re.I)
    return found.group(1) if found and len(html) < 1000 else None


def is_local(url: str, origin: str) -> bool:
    """Whether the browser may fetch ``url``: the site's own server, or data the page already holds."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return f"{parts.scheme}://{parts.netloc}" == origin


def raw_tex(texts: Sequence[str]) -> list[str]:
    """The pieces of visible text that are TeX MathJax left untypeset."""
    return [m.group(0)[:80] for text in texts for m in _RAW_TEX.finditer(text)]


def judge_page(page: str, width: int, probe: dict[str, Any]) -> list[Finding]:
    """Turn what the browser measured on one page (see ``_PROBE``) into findings."""
    found: list[Finding] = []

    def add(kind: str, severity: str, detail: str) -> None:
        found.append(Finding(kind, severity, page, width, detail))

    for text in probe.get("mathUnrendered", []):
        add("math", "fail", f"math element not typeset: {text!r}")
    for text in probe.get("mathErrors", []):
        add("math", "fail", f"MathJax error: {text!r}")
    for text in raw_tex(probe.get("texts", [])):
        add("math", "fail", f"raw TeX in the text: {text!r}")
    for widget in probe.get("widgets", []):
        if not widget["rendered"]:
            add("widget", "fail", f"widget view {widget['model']} did not render")
    page_width, window = probe.get("scrollWidth", 0), probe.get("clientWidth", 0)
    if page_width > window + 1:
        add("overflow", "fail", f"the page scrolls sideways: {page_width} px of content in a {window} px window")
    for box in probe.get("outside", []):
        add("overflow", "fail", f"{box['what']} {box['name']} sticks out of the column by {box['by']} px")
    for box in probe.get("scrolling", []):
        severity = "fail" if width >= DESK_WIDTH and box["what"] != "code" else "warn"
        add("scroll", severity, f"{box['what']} {box['name']} is {box['content']} px wide in a {box['box']} px "
                                f"column (it scrolls inside its wrapper)")
    return found


def png_dpi(data: bytes) -> float | None:
    """The horizontal resolution a PNG records (matplotlib writes the figure's dpi in its pHYs chunk)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"pHYs" and length == 9:
            per_unit, _, unit = struct.unpack(">IIB", data[at + 8:at + 17])
            return per_unit * 0.0254 if unit == 1 else None
        if kind == b"IDAT":
            return None
        at += 12 + length
    return None


def judge_figure(page: str, width: int, image: dict[str, Any],
                 dpi: float | None) -> tuple[dict[str, Any], list[Finding]]:
    """One raster figure's scale (displayed / natural width) and the smallest font (pt) that still renders at 9 px;
    a warning at 1280 px when it is shown below half its pixel width."""
    scale = image["displayed"] / image["natural"]
    record = {"page": page, "width": width, "src": image["src"], "natural_px": image["natural"],
              "displayed_px": round(image["displayed"], 1), "scale": round(scale, 3),
              "dpi": round(dpi, 1) if dpi else None}
    if dpi:
        record["min_pt_for_9px"] = round(MIN_TEXT_PX * 72.0 / (dpi * scale), 1)
    findings = []
    if scale < MIN_FIGURE_SCALE and width >= DESK_WIDTH:
        pt = f"; text under {record['min_pt_for_9px']} pt renders below 9 px" if dpi else ""
        findings.append(Finding("figure-scale", "warn", page, width,
                                f"{image['src']} shown at {scale:.2f} of its {image['natural']} px width{pt}"))
    return record, findings


# ------------------------------------------------------------------------------------------------ the browser
#: what the page itself measures once it has settled (run through page.evaluate)
_PROBE = r"""
() => {
  const main = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.classList.length ? '.' + [...el.classList].slice(0, 2).join('.') : '');
  const what = el => el.matches('table, .pst-scrollable-table-container, .output.text_html') ||
      el.querySelector('table') ? 'table' : el.matches('pre, .highlight, div[class*=highlight]') ||
      el.querySelector('pre') ? 'code' : el.matches('img, figure') || el.querySelector('img') ? 'figure' : 'element';
  const shown = el => { const r = el.getBoundingClientRect(); const cs = getComputedStyle(el);
      return r.width > 0 && r.height > 0 && cs.visibility !== 'hidden'; };
  const clips = el => ['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(el).overflowX);
  const clippedInside = el => { for (let a = el.parentElement; a && a !== main; a = a.parentElement)
      if (clips(a)) return true; return false; };
  const maths = [...document.querySelectorAll('.math')];
  const texts = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT, { acceptNode: n =>
      n.parentElement && n.parentElement.closest('script, style, pre, code, textarea, kbd, samp, mjx-container, .math')
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT });
  for (let n = walker.nextNode(); n; n = walker.nextNode()) if (/[$\\]/.test(n.nodeValue)) texts.push(n.nodeValue);
  const column = main.getBoundingClientRect();
  const outside = [], scrolling = [], reported = [];
  for (const el of main.querySelectorAll('*')) {
    if (!shown(el) || reported.some(r => r.contains(el))) continue;
    const cs = getComputedStyle(el);
    if (['auto', 'scroll'].includes(cs.overflowX) && el.scrollWidth > el.clientWidth + 1) {
      scrolling.push({ name: name(el), what: what(el), content: el.scrollWidth, box: el.clientWidth });
      reported.push(el); continue;
    }
    const r = el.getBoundingClientRect();
    const by = Math.round(Math.max(r.right - column.right, column.left - r.left));
    if (by > 1 && cs.position !== 'fixed' && !clippedInside(el)) {
      outside.push({ name: name(el), what: what(el), by }); reported.push(el);
    }
  }
  const images = [...main.querySelectorAll('img')].filter(shown).map(img => ({
      src: img.currentSrc || img.src, natural: img.naturalWidth, displayed: img.getBoundingClientRect().width,
      broken: img.complete && img.naturalWidth === 0 }));
  const widgets = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')].map(s => {
      const area = s.previousElementSibling;
      let model = '?'; try { model = JSON.parse(s.textContent).model_id; } catch (e) {}
      const rendered = !!area && area.classList.contains('widget-subarea') && area.childElementCount > 0 &&
          area.getBoundingClientRect().height > 0 && !area.querySelector('.jupyter-widgets-error-widget');
      return { model, rendered }; });
  return { scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
      mathUnrendered: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim().slice(0, 80)),
      mathErrors: [...document.querySelectorAll('mjx-merror, [data-mjx-error]')].map(e =>
          (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120)),
      texts, outside: outside.slice(0, 20), scrolling: scrolling.slice(0, 20), images, widgets };
}
"""
#: resolves once MathJax has typeset the page, the widgets have rendered (or failed) and the fonts are in
_SETTLE = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const views = () => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const done = () => views().every(s => s.previousElementSibling &&
      s.previousElementSibling.classList.contains('widget-subarea') && s.previousElementSibling.childElementCount > 0);
  // the manager renders the views once it has read the page's widget state; without that state nothing will come
  const state = document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
  for (let waited = 0; state && views().length && !done() && waited < 15000; waited += 100)
    await new Promise(r => setTimeout(r, 100));
  await document.fonts.ready;
}
"""


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve the built site on a free localhost port for as long as the block runs; yields the origin."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # noqa: D102 - the check reports failures itself
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _image_bytes(src: str, origin: str, site: Path) -> bytes | None:
    """The bytes of an image the page shows: a file of the site, or an inline base64 data URL."""
    if src.startswith("data:image/png;base64,"):
        return base64.b64decode(src.partition(",")[2])
    local = site / unquote(urlsplit(src).path).lstrip("/")
    return local.read_bytes() if is_local(src, origin) and not src.startswith("data:") and local.is_file() else None


def _check_page(context: Any, origin: str, site: Path, page: str, width: int, screens: Path | None,
                report: Report) -> None:
    """Open one page at one width, collect what went wrong while it loaded, then measure it."""
    tab = context.new_page()
    events: list[Finding] = []
    answered_badly: set[str] = set()  # a URL the server refused is one failure, not two (the 404, then the abort)

    def add(kind: str, detail: str) -> None:
        events.append(Finding(kind, "fail", page, width, detail))

    def on_console(message: Any) -> None:
        # a resource that failed to load is counted once, as an asset or off-site request, not again here
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            add("js-error", f"console: {message.text[:300]}")

    def on_response(response: Any) -> None:
        if response.status >= 400 and is_local(response.url, origin):
            answered_badly.add(response.url)
            add("asset", f"{response.request.resource_type} {urlsplit(response.url).path} -> HTTP {response.status}")

    def on_failed(request: Any) -> None:
        if is_local(request.url, origin) and request.url not in answered_badly:
            add("asset", f"{request.resource_type} {urlsplit(request.url).path} -> {request.failure}")

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: add("js-error", f"uncaught: {str(error)[:300]}"))
    tab.on("response", on_response)
    tab.on("requestfailed", on_failed)
    try:
        tab.goto(f"{origin}/{page}", wait_until="load", timeout=_SLOW)
        tab.evaluate(_SETTLE)
        probe = tab.evaluate(_PROBE)
    except Exception as error:  # a page that cannot be opened or measured is itself the finding
        add("js-error", f"the page could not be checked: {str(error).splitlines()[0][:300]}")
        probe = {}
    report.findings.extend(events)
    report.findings.extend(judge_page(page, width, probe))
    for image in probe.get("images", []):
        if image["broken"]:
            if image["src"] in answered_badly:
                continue  # already counted as the asset the server refused
            report.findings.append(Finding("asset", "fail", page, width, f"image {image['src']} did not load"))
        elif image["natural"] >= 64 and not image["src"].lower().endswith(".svg"):
            data = _image_bytes(image["src"], origin, site)
            shown = image["src"][:30] + "..." if image["src"].startswith("data:") else urlsplit(image["src"]).path
            image = {**image, "src": shown}
            record, findings = judge_figure(page, width, image, png_dpi(data) if data else None)
            report.figures.append(record)
            report.findings.extend(findings)
    if screens is not None:
        shot = screens / f"{page.removesuffix('.html').replace('/', '__')}-{width}.png"
        with contextlib.suppress(Exception):
            tab.screenshot(path=str(shot), full_page=True, timeout=_SLOW)
    tab.close()


def _router(origin: str, width: int, report: Report) -> Any:
    """The request handler of one browser context: the site's own requests go through, every other one is
    blocked and reported (nothing leaves the machine)."""

    def route(route: Any, request: Any) -> None:
        if is_local(request.url, origin):
            route.continue_()
            return
        page = urlsplit(request.frame.url).path.lstrip("/") if request.frame else "?"
        report.findings.append(Finding("off-site", "fail", page, width, f"{request.resource_type} {request.url[:200]}"))
        route.abort("blockedbyclient")

    return route


def check_site(site: Path, screens: Path | None = None, widths: Sequence[int] = WIDTHS,
               chromium: Path = CHROMIUM, only: Sequence[str] = ()) -> Report:
    """Open every page of ``site`` at each width in headless Chromium, offline, and report what a reader would see."""
    site = Path(site)
    if not (site / "index.html").is_file() and not site_pages(site):
        raise CheckError(f"no built site at {site}: run `make html` first")
    if not Path(chromium).exists():
        raise CheckError(f"headless Chromium not found at {chromium}: {INSTALL_HINT}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        raise CheckError("Playwright is not installed: `make install` (the test extra)") from error
    if screens is not None:
        screens.mkdir(parents=True, exist_ok=True)
    report = Report(widths=list(widths))
    started = time.perf_counter()
    with serve(site) as origin, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=list(CHROMIUM_FLAGS))
        try:
            for width in widths:
                context = browser.new_context(viewport={"width": width, "height": HEIGHT}, service_workers="block")
                context.route("**/*", _router(origin, width, report))
                for page in site_pages(site):
                    if only and not any(fnmatch.fnmatch(page, pattern) for pattern in only):
                        continue
                    target = redirect_target((site / page).read_text(errors="replace"))
                    if target is not None:  # a bare redirect: its target must exist, and is checked on its own
                        if not (site / page).parent.joinpath(target).is_file():
                            report.findings.append(Finding("asset", "fail", page, width,
                                                           f"redirect to missing {target}"))
                        continue
                    if page not in report.pages:
                        report.pages.append(page)
                    _check_page(context, origin, site, page, width, screens, report)
                context.close()
        finally:
            browser.close()
    report.seconds = time.perf_counter() - started
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perlkit.htmlcheck SITE``: exit 1 when a reader would meet a failure, 2 when it cannot check."""
    parser = argparse.ArgumentParser(prog="python -m perlkit.htmlcheck", description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, nargs="?", default=Path("_build/html"), help="the built site")
    parser.add_argument("--screens", type=Path, default=Path("_build/screens"),
                        help="where screenshots and report.json go")
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), help="viewport widths (CSS px)")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM, help="the Chromium binary")
    parser.add_argument("--only", nargs="+", default=[], metavar="GLOB", help="check only these pages")
    args = parser.parse_args(argv)
    try:
        report = check_site(args.site, args.screens, args.widths, args.chromium, args.only)
    except CheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.screens.mkdir(parents=True, exist_ok=True)
    (args.screens / "report.json").write_text(json.dumps(
        {"seconds": round(report.seconds, 1), "pages": report.pages,
         "findings": [asdict(f) for f in report.findings], "figures": report.figures}, indent=1) + "\n")
    print(report.summary())
    print(f"screenshots and report.json in {args.screens}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
