"""Read the built book in a real browser, as a student would, at desktop and phone width.

    python scripts/browser_check.py _build/html            # every page of the toc
    python scripts/browser_check.py _build/html --pages intro.html chapters/08_muon/muon.html

Headless Debian Chromium driven by Playwright (its own browser download cannot work here). The
book's formulas are typeset by KaTeX when it is built; whatever is left to MathJax 3 (loaded from a
CDN) is typeset in the browser, and here MathJax is served from the npm package ``mathjax@3``
(``.cache/mathjax``, installed by ``make browser-deps``), and every other outside request is
refused. On each page and width it checks that every formula is typeset without error and no
raw TeX is left, every image loads, no request fails, nothing makes the page wider than the
screen, no display equation is clipped (too wide ones must scroll inside themselves), and on a
phone that ☰ opens the chapter list; one solution dropdown opens; notebook pages link to Colab.
On a page with the optimizer playground (``nntrain.playground``; required on ``PLAYGROUND_PAGES``)
a trajectory is drawn, moving the step slider or choosing another function redraws it, and
every preset button shows its setting.
It prints, per page, the time until the first screen's math is typeset (also with the CPU slowed
4×, like a mid-range phone) and the page's weight, and the weight of each playground.
Failing pages are saved as screenshots.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
MATHJAX_DIR = ROOT / ".cache" / "mathjax" / "node_modules" / "mathjax" / "es5"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1400, "height": 900}, "device_scale_factor": 1},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
              "has_touch": True},
}
THROTTLE = 4  # CPU slowdown for the phone timing
# Console errors that every jupyter-book 1 page prints and that do no harm.
HARMLESS = (re.compile(r"THEBE_JS_URL"), re.compile(r"invalid theme mode"))

# Runs in the page: the facts the check judges, gathered in one pass.
FACTS_JS = """() => {
  const main = document.querySelector('main');
  const prose = main.cloneNode(true);
  prose.querySelectorAll('pre, code, .cell_output, mjx-container, .katex, script, style').forEach(e => e.remove());
  const text = prose.textContent;
  const raw = [];
  for (const re of [/\\$\\$/g, /(^|[^\\\\])\\\\\\(/g, /\\\\frac|\\\\mathbb|\\\\begin\\{/g, /\\$[^$\\s][^$]{0,60}\\$/g]) {
    for (const m of text.matchAll(re)) raw.push(text.slice(Math.max(0, m.index - 30), m.index + 40));
  }
  const clipped = [];
  const displays = document.querySelectorAll('mjx-container[display="true"], .math-display .katex-display');
  for (const d of displays) {
    // a display wider than the column must scroll inside some box of its own, not be cut off
    if (d.scrollWidth <= main.clientWidth + 1 && d.getBoundingClientRect().right <= innerWidth + 1) continue;
    let scrolls = false;
    for (let e = d; e && e !== main; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX;
      if ((o === 'auto' || o === 'scroll') && e.clientWidth <= main.clientWidth + 1) { scrolls = true; break; }
    }
    if (!scrolls) clipped.push(d.textContent.slice(0, 60));
  }
  const wideDisplays = [...displays].filter(d => d.scrollWidth > (d.parentElement?.clientWidth ?? 1e9) + 1).length;
  const imgs = [...main.querySelectorAll('img')];
  const colab = [...document.querySelectorAll('a')].map(a => a.href)
    .filter(h => h.includes('colab.research.google.com'));
  return {
    math: document.querySelectorAll('mjx-container, .math-katex').length,
    katex: document.querySelectorAll('.math-katex').length,
    mathErrors: document.querySelectorAll('mjx-merror, .katex-error').length,
    raw, clipped, wideDisplays,
    images: imgs.length,
    brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    altless: imgs.filter(i => !i.alt || /\\.png$/.test(i.alt)).map(i => i.src),
    overflow: (() => {  // how far the page's content reaches past the screen (what makes a phone pan sideways)
      let worst = 0, what = '';
      const contained = e => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
        if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX)) return true; } return false; };
      for (const e of document.querySelectorAll('.bd-article *, .bd-header *')) {  // not the closed drawers
        const r = e.getBoundingClientRect();
        const visible = e.textContent.trim() || ['IMG', 'svg', 'CANVAS', 'VIDEO', 'TABLE'].includes(e.tagName);
        if (visible && r.width && r.right - innerWidth > worst + 1 && !contained(e)) { worst = r.right - innerWidth; what = e.textContent.slice(0, 50); }
      }
      return [Math.round(worst), what];
    })(),
    solutions: document.querySelectorAll('.solution').length,
    colab,
  };
}"""

# Pages that must carry the static optimizer playground of nntrain.playground.
PLAYGROUND_PAGES = ("chapters/02_optimizers/playground.html",)
# Every playground of the page: its size in bytes, the drawn path, the setting and the contour image shown.
PLAYGROUND_JS = """() => [...document.querySelectorAll('.nnt-playground')].map(w => {
  const path = w.querySelector('[data-role="path"]'), img = w.querySelector('[data-role="img"]');
  return {bytes: new Blob([w.outerHTML]).size, d: path ? (path.getAttribute('d') || '') : '',
          setting: w.dataset.setting || '', img: img ? (img.getAttribute('href') || '').length : 0};
})"""
STATE_JS = """w => [w.querySelector('[data-role="path"]').getAttribute('d'), w.dataset.setting,
  w.querySelector('[data-role="img"]').getAttribute('href')]"""


def check_playground(page, report: PageReport) -> None:
    """The static playground works without a kernel: drawn, and redrawn when a control moves."""
    widgets = page.evaluate(PLAYGROUND_JS)
    p = report.problems
    if not widgets:
        if report.page in PLAYGROUND_PAGES:
            p.append("the optimizer playground is missing (or its script did not run)")
        return
    report.facts["playgrounds"] = [w["bytes"] for w in widgets]
    for i, w in enumerate(widgets):
        if not w["d"] or not w["setting"] or not w["img"]:
            p.append(f"playground {i}: no trajectory or contour drawn")
            continue
        root = page.locator(".nnt-playground").nth(i)
        slider = root.locator('input[type="range"][data-role="lr"]')
        slider.scroll_into_view_if_needed()
        slider.fill("0" if slider.input_value() != "0" else "1")  # what a drag to another step does
        d, setting, _ = root.evaluate(STATE_JS)
        if d == w["d"] or setting == w["setting"]:
            p.append(f"playground {i}: moving the step slider does not change the drawn trajectory")
        select = root.locator('select[data-role="fn"]')
        options = select.locator("option").count()
        if options > 1:
            before = root.evaluate(STATE_JS)
            select.select_option(index=(int(select.input_value()) + 1) % options)
            after = root.evaluate(STATE_JS)
            if after[0] == before[0] or after[2] == before[2]:
                p.append(f"playground {i}: choosing another function does not redraw the contour and path")
        buttons = root.locator(".pg-presets button")
        for k in range(buttons.count()):
            button = buttons.nth(k)
            button.scroll_into_view_if_needed()
            button.click()
            want, (d, setting, _) = button.get_attribute("data-preset"), root.evaluate(STATE_JS)
            if setting != want or not d:
                p.append(f"playground {i}: the button «{button.text_content()}» shows {setting!r}, not {want!r}")


# When the first screen is readable, in ms from navigation start. Formulas typeset at build time
# (KaTeX) are readable at the first contentful paint once KaTeX's two main fonts have arrived;
# formulas left to MathJax are readable when the ones in view are typeset.
FIRST_SCREEN_JS = """async () => {
  const fcp = await new Promise(r => new PerformanceObserver((list, obs) => {
    const e = list.getEntries().find(e => e.name === 'first-contentful-paint');
    if (e) { obs.disconnect(); r(e.startTime); }
  }).observe({type: 'paint', buffered: true}));
  let ready = fcp;
  if (document.querySelector('.katex')) {
    await Promise.all(['KaTeX_Main', 'KaTeX_Math'].map(f => document.fonts.load('1em ' + f)));
    for (const e of performance.getEntriesByType('resource'))
      if (/KaTeX_(Main|Math)-/.test(e.name)) ready = Math.max(ready, e.responseEnd);
  }
  if (!document.querySelector('main .math')) return ready;  // nothing left to MathJax
  for (let i = 0; i < 500 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 10));
  await MathJax.startup.promise;
  const seen = () => [...document.querySelectorAll('main .math')].filter(e => {
    const r = e.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight;
  });
  for (let i = 0; i < 200; i++) {
    if (seen().every(e => e.querySelector('mjx-container') || e.tagName === 'MJX-CONTAINER')) break;
    await new Promise(r => setTimeout(r, 10));
  }
  return performance.now();
}"""

# Typesets everything (scrolling through a lazily typeset page) before the facts are gathered.
TYPESET_ALL_JS = """async () => {
  if (!document.querySelector('main .math')) return;
  await MathJax.startup.promise;
  if (MathJax.typesetPromise) await MathJax.typesetPromise();
  const h = document.documentElement.scrollHeight;
  for (let y = 0; y < h; y += innerHeight) { scrollTo(0, y); await new Promise(r => setTimeout(r, 20)); }
  if (MathJax.startup.document.render) MathJax.startup.document.render();
  await new Promise(r => setTimeout(r, 300));
  scrollTo(0, 0);
}"""


@dataclass
class PageReport:
    page: str
    width: str
    problems: list[str] = field(default_factory=list)
    first_screen_ms: float = 0.0
    first_screen_slow_ms: float | None = None
    bytes: int = 0
    facts: dict = field(default_factory=dict)


def toc_pages(html_dir: Path) -> list[str]:
    """The pages of the book in toc order: intro, then every file of ``_toc.yml``."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    pages = [f"{f}.html" for f in files]
    missing = [p for p in pages if not (html_dir / p).exists()]
    if missing:
        raise FileNotFoundError(f"pages of the toc missing from {html_dir}: {missing}")
    return pages


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a browser that hangs up early is no error


def serve(html_dir: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``html_dir`` on a free localhost port in a daemon thread."""
    handler = functools.partial(_Quiet, directory=str(html_dir))
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def missing_requirements() -> str | None:
    """Why the check cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (requirements.txt has it)"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: `make browser-deps` installs it (apt-get, as root)"
    if not (MATHJAX_DIR / "tex-mml-chtml.js").exists():
        return f"no MathJax at {MATHJAX_DIR}: `make browser-deps` installs it (npm)"
    return None


def _route_outside(route):
    url = route.request.url
    if "/mathjax@3/es5/" in url:
        path = MATHJAX_DIR / url.split("/mathjax@3/es5/", 1)[1].split("?")[0]
        if path.is_file():
            kind = "application/javascript" if path.suffix == ".js" else "font/woff"
            return route.fulfill(body=path.read_bytes(), content_type=kind)
    return route.abort()


def _open(context, url: str, report: PageReport, errors: list[str], throttle: int = 1):
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and not any(h.search(m.text) for h in HARMLESS)
            and errors.append(f"console: {m.text[:200]}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))

    def on_response(r):
        if r.status >= 400:
            errors.append(f"HTTP {r.status} {r.url}")
        try:
            report.bytes += int(r.headers.get("content-length") or len(r.body()))
        except Exception:  # a body that is gone (redirect, aborted): no weight to add
            pass

    page.on("response", on_response)
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), _route_outside)
    if throttle > 1:
        cdp = context.new_cdp_session(page)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": throttle})
    page.goto(url, wait_until="domcontentloaded")
    ms = page.evaluate(FIRST_SCREEN_JS)
    return page, ms


def check_page(browser, base: str, page_path: str, width: str, out_dir: Path | None) -> PageReport:
    """All checks of one page at one width."""
    report = PageReport(page_path, width)
    errors: list[str] = []
    context = browser.new_context(**VIEWPORTS[width])
    try:
        page, ms = _open(context, f"{base}/{page_path}", report, errors)
        report.first_screen_ms = ms
        page.wait_for_load_state("load")
        page.evaluate(TYPESET_ALL_JS)
        facts = page.evaluate(FACTS_JS)
        report.facts = facts
        p = report.problems
        if facts["mathErrors"]:
            p.append(f"{facts['mathErrors']} MathJax errors")
        p += [f"raw TeX in prose: …{r}…" for r in facts["raw"][:5]]
        p += [f"display equation clipped: {c}" for c in facts["clipped"][:5]]
        p += [f"image not loaded: {s}" for s in facts["brokenImages"]]
        p += [f"image without alt text: {s}" for s in facts["altless"][:3]]
        excess, what = facts["overflow"]
        if excess > 0:
            p.append(f"the page reaches {excess} px past the screen («{what.strip()}»)")
        if page_path.startswith("chapters/") and Path(page_path).stem != "index":
            nb = page_path.replace(".html", ".ipynb")
            if not any(h.endswith(f"/blob/main/{nb}") for h in facts["colab"]):
                p.append(f"no Colab link to …/blob/main/{nb}")
        check_playground(page, report)
        if facts["solutions"]:
            title = page.locator(".solution.dropdown .admonition-title").first
            title.scroll_into_view_if_needed()
            title.click()
            page.wait_for_timeout(300)
            if not page.locator(".solution.dropdown").first.evaluate(
                    "e => [...e.children].some(c => !c.classList.contains('admonition-title')"
                    " && c.getBoundingClientRect().height > 0)"):
                p.append("a solution does not open when its title is clicked")
        if width == "phone":
            page.evaluate("scrollTo(0, 0)")
            toggle = page.locator("button.primary-toggle:visible").first
            toggle.click()
            page.wait_for_timeout(500)
            links = page.locator(".bd-sidebar-primary a.reference.internal:visible").count()
            if links < 3:
                p.append(f"☰ does not open the chapter list ({links} links visible)")
        p += errors
        if p and out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out_dir / f"{page_path.replace('/', '_')}_{width}.png"), full_page=False)
        page.close()
        if width == "phone":
            slow, ms = _open(context, f"{base}/{page_path}", PageReport(page_path, width), [], THROTTLE)
            report.first_screen_slow_ms = ms
            slow.close()
    finally:
        context.close()
    return report


def check_book(html_dir: Path, pages: list[str] | None = None, out_dir: Path | None = None,
               widths=("desktop", "phone"), workers: int = 2) -> list[PageReport]:
    """Check every page of the built book at every width; return the reports in page order.

    ``workers`` browsers check pages side by side (each thread drives its own Playwright).
    """
    from concurrent.futures import ThreadPoolExecutor
    from queue import Empty, Queue

    from playwright.sync_api import sync_playwright

    html_dir = Path(html_dir)
    pages = pages or toc_pages(html_dir)
    jobs = [(p, w) for p in pages for w in widths]
    todo: Queue = Queue()
    for job in jobs:
        todo.put(job)
    done: dict = {}
    server, base = serve(html_dir)

    def worker():
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                while True:
                    try:
                        page, width = todo.get_nowait()
                    except Empty:
                        return
                    done[page, width] = check_page(browser, base, page, width, out_dir)
            finally:
                browser.close()

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for future in [pool.submit(worker) for _ in range(max(1, workers))]:
                future.result()
    finally:
        server.shutdown()
    return [done[job] for job in jobs]


def summary(reports: list[PageReport]) -> str:
    """A table: page, width, first-screen typeset time (and 4× slowed), weight, formulas, problems."""
    lines = [f"{'page':48} {'width':7} {'1st screen':>10} {'4x CPU':>8} {'KB':>6} {'math':>5} {'wide':>4} problems"]
    for r in reports:
        slow = f"{r.first_screen_slow_ms:.0f}" if r.first_screen_slow_ms is not None else "-"
        lines.append(f"{r.page:48} {r.width:7} {r.first_screen_ms:10.0f} {slow:>8} {r.bytes / 1024:6.0f} "
                     f"{r.facts.get('math', 0):5d} {r.facts.get('wideDisplays', 0):4d} {len(r.problems)}")
    for r in reports:
        if r.facts.get("playgrounds"):
            kb = ", ".join(f"{b / 1024:.0f}" for b in r.facts["playgrounds"])
            lines.append(f"playground on {r.page} [{r.width}]: {kb} KB of the page's {r.bytes / 1024:.0f} KB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html_dir", type=Path)
    parser.add_argument("--pages", nargs="*")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "test-reports" / "browser")
    parser.add_argument("--json", type=Path, help="also write the reports as JSON")
    args = parser.parse_args(argv)
    why = missing_requirements()
    if why:
        print(f"browser check skipped: {why}")
        return 2
    reports = check_book(args.html_dir, args.pages, args.screenshots)
    print(summary(reports))
    for r in reports:
        for problem in r.problems:
            print(f"FAIL {r.page} [{r.width}]: {problem}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in reports], ensure_ascii=False, indent=1))
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
