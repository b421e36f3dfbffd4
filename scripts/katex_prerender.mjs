// Typeset the built book's formulas at build time with KaTeX, so that a page is readable at once:
// no math is typeset in the reader's browser (MathJax took ~2.5 s a chapter, 15 s on a slow phone).
//
//   node scripts/katex_prerender.mjs _build/html KATEX_DIR
//
// Sphinx writes inline math as <span class="math notranslate nohighlight">\(…\)</span> and display
// math as <div class="math notranslate nohighlight">…\[…\]</div>. Each is replaced by KaTeX's HTML.
// A formula KaTeX cannot typeset stays as it is and MathJax (still loaded on that page) does it;
// a page with no formula left does not load MathJax at all. Prints how many were typeset.
import fs from "fs";
import path from "path";
import { createRequire } from "module";

const [htmlDir, katexDir] = process.argv.slice(2);
if (!htmlDir || !katexDir) {
  console.error("usage: node scripts/katex_prerender.mjs HTML_DIR KATEX_PACKAGE_DIR");
  process.exit(2);
}
const katex = createRequire(path.join(path.resolve(katexDir), "package.json"))("./dist/katex.js");

const unescape = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
  .replace(/&#39;/g, "'").replace(/&amp;/g, "&");
// An inline formula glued to a hyphenated word («$L$-гладкая») is kept on one line with it.
const INLINE = /<span class="math notranslate nohighlight">\\\(([\s\S]*?)\\\)<\/span>(-[\p{L}\d]+)?/gu;
const DISPLAY = /<div class="math notranslate nohighlight"([^>]*)>((?:\s*<span class="eqno">[\s\S]*?<\/span>)?)\s*([\s\S]*?)<\/div>/g;
const MATHJAX = /<script[^>]*>window\.MathJax = [^<]*<\/script>\s*|<script[^>]*mathjax@3[^>]*><\/script>\s*/g;
const OPTIONS = { throwOnError: true, strict: "ignore", output: "html", trust: false };

let done = 0, left = 0;
const failures = [];

function render(tex, displayMode, file) {
  try {
    const html = katex.renderToString(tex, { ...OPTIONS, displayMode });
    done++;
    return html;
  } catch (err) {
    left++;
    failures.push(`${file}: ${String(err.message).slice(0, 120)}`);
    return null;
  }
}

function processFile(file) {
  const source = fs.readFileSync(file, "utf8");
  if (!source.includes('class="math notranslate nohighlight"')) return;
  let html = source.replace(INLINE, (all, tex, suffix) => {
    const out = render(unescape(tex), false, file);
    if (!out) return all;
    const math = `<span class="math-katex">${out}</span>`;
    return suffix ? `<span class="math-join">${math}${suffix}</span>` : math;
  });
  html = html.replace(DISPLAY, (all, attrs, eqno, body) => {
    const m = body.match(/^\\\[([\s\S]*)\\\]\s*$/);
    const out = render(unescape(m ? m[1] : body), true, file);
    return out ? `<div class="math-katex math-display"${attrs}>${eqno}${out}</div>` : all;
  });
  const depth = path.relative(htmlDir, path.dirname(file)).split(path.sep).filter(Boolean).length;
  const css = `${"../".repeat(depth)}_static/katex/katex.min.css`;
  html = html.replace("</head>", `<link rel="stylesheet" href="${css}" />\n</head>`);
  if (!html.includes('class="math notranslate nohighlight"')) html = html.replace(MATHJAX, "");
  fs.writeFileSync(file, html);
}

function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== "_static" && entry.name !== "_sources") walk(p);
    else if (entry.name.endsWith(".html")) processFile(p);
  }
}

walk(htmlDir);
// The stylesheet and the woff2 fonts (every current browser reads woff2; the others are never asked for).
const dist = path.join(katexDir, "dist");
const out = path.join(htmlDir, "_static", "katex");
fs.mkdirSync(path.join(out, "fonts"), { recursive: true });
// font-display: swap: text shows at once in a fallback font, then in KaTeX's own when it arrives.
fs.copyFileSync(path.join(dist, "katex-swap.min.css"), path.join(out, "katex.min.css"));
for (const f of fs.readdirSync(path.join(dist, "fonts")).filter((f) => f.endsWith(".woff2")))
  fs.copyFileSync(path.join(dist, "fonts", f), path.join(out, "fonts", f));
console.log(`katex: ${done} formulas typeset at build time, ${left} left to MathJax`);
for (const f of failures.slice(0, 20)) console.log(`  left to MathJax: ${f}`);
