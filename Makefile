# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make book   — build the HTML book from the committed notebook outputs
#   make test   — run every test: the package, every notebook in quick mode, the book build
# Extra: make bench (timings), make run-notebooks (re-execute all notebooks at full size).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: book test unit notebooks bench run-notebooks status browser-deps clean

$(STAMP): requirements.txt code/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# --no-deps: the file is a complete freeze, and it overrides one pin of a dependency on purpose:
	# sphinx-book-theme 1.3 asks for pydata-sphinx-theme 0.17.1, whose ☰ button is dead (#2451).
	$(BIN)/python -m pip install -q --no-deps -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e code
	touch $(STAMP)

# KaTeX typesets the formulas when the book is built (Node.js and npm; without them MathJax does it).
KATEX := .cache/katex/node_modules/katex/dist/katex.js
$(KATEX):
	@npm install -q --prefix .cache/katex katex@0.16.47 >/dev/null || echo "KaTeX could not be installed: formulas are left to MathJax"

book: $(STAMP) $(KATEX)
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . --all -W -n --keep-going
	@echo "The book is in _build/html: open $(CURDIR)/_build/html/index.html"

# The browser check needs Debian's Chromium (installed here when we are root) and MathJax from npm.
# Without them its test is skipped with a message saying how to get them.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	    if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium >/dev/null || \
	        (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null) || true; \
	    else echo "browser check: no /usr/bin/chromium and not root: install Debian's chromium to enable it"; fi; fi
	@[ -f .cache/mathjax/node_modules/mathjax/es5/tex-chtml.js ] || \
	    npm install -q --prefix .cache/mathjax mathjax@3.2.2 >/dev/null || echo "browser check: npm could not install MathJax"

# Two pytest workers share the cores: one torch thread each (more would only contend).
test: $(STAMP) $(KATEX) browser-deps
	NNTRAIN_QUICK=1 TQDM_DISABLE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadfile \
	    tests chapters --nbval-lax --nbval-current-env --nbval-cell-timeout=300 \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider --junitxml=test-reports/junit.xml

unit: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) tests -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_grade.py --assignment part1

run-notebooks: $(STAMP)
	$(BIN)/python scripts/booktools.py run chapters/*/*.ipynb

# The status page (execution times, device, versions) from the notebooks' own metadata.
status: $(STAMP)
	$(BIN)/python scripts/booktools.py status

clean:
	rm -rf _build $(VENV)
