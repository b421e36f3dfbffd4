// Check the built book in a real browser: every formula typeset, every image loaded, no broken request.
//
//   (one-time) apt-get install chromium && npm install --prefix /tmp/bcheck playwright-core mathjax@3
//   python -m http.server -d _build/html 8765 &
//   NODE_PATH=/tmp/bcheck/node_modules node scripts/browser_check.mjs http://localhost:8765 intro.html chapters/...html
//
// MathJax 3 is loaded by jupyter-book from a CDN; it is served here from the npm `mathjax@3` package.
import { createRequire } from "module";
import { readFileSync } from "fs";
import path from "path";

const require = createRequire(process.env.NODE_PATH + "/");
const { chromium } = require("playwright-core");
const mathjaxDir = path.dirname(require.resolve("mathjax/es5/tex-chtml.js"));
const [base, ...pages] = process.argv.slice(2);
const HARMLESS = [/THEBE_JS_URL/, /invalid theme mode/];

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
let failed = 0;
for (const page_path of pages) {
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error" && !HARMLESS.some((r) => r.test(m.text()))) errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()} ${r.url()}`); });
  // The last registered route wins: block the outside world first, then serve MathJax locally.
  await page.route(/^https?:\/\/(?!localhost)/, (route) => route.abort());
  await page.route(/mathjax/, (route) => {
    const file = path.join(mathjaxDir, new URL(route.request().url()).pathname.split("/es5/").pop());
    const type = file.endsWith(".js") ? "application/javascript" : "font/woff";
    route.fulfill({ body: readFileSync(file), contentType: type });
  });
  await page.goto(`${base}/${page_path}`, { waitUntil: "load" });
  await page.waitForTimeout(4000);
  const report = await page.evaluate(() => {
    // prose only: code cells and outputs may hold dollars legitimately (matplotlib labels, f-strings)
    const main = document.querySelector("main")?.cloneNode(true);
    main?.querySelectorAll("pre, code, .cell_output, mjx-container").forEach((e) => e.remove());
    const text = main?.textContent ?? "";
    return {
      math: document.querySelectorAll("mjx-container").length,
      mathErrors: document.querySelectorAll("mjx-merror").length,
      rawDollars: (text.match(/.{0,40}\$.{0,40}/g) || []),  // any $ left in prose is unrendered math
      images: document.querySelectorAll("main img").length,
      brokenImages: [...document.querySelectorAll("main img")].filter((i) => !(i.naturalWidth > 0)).length,
      exercises: document.querySelectorAll(".exercise").length,
      solutions: document.querySelectorAll(".solution").length,
      colab: [...document.querySelectorAll("a")].some((a) => a.href.includes("colab.research.google.com")),
    };
  });
  const bad = report.mathErrors || report.rawDollars.length || report.brokenImages || errors.length;
  if (bad) failed++;
  console.log(`${bad ? "FAIL" : "ok  "} ${page_path} ${JSON.stringify(report)} ${errors.join(" | ")}`);
  await page.close();
}
await browser.close();
process.exit(failed ? 1 : 0);
