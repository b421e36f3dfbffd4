# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make book   — build the HTML book from the committed notebook outputs
#   make test   — run every test: the package, every notebook in quick mode, the book build
# Extra: make bench (timings), make run-notebooks (re-execute all notebooks at full size).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: book test unit notebooks bench run-notebooks clean

$(STAMP): requirements.txt code/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e code
	touch $(STAMP)

book: $(STAMP)
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . --all -W -n --keep-going
	@echo "The book is in _build/html: open $(CURDIR)/_build/html/index.html"

# Two pytest workers share the cores: one torch thread each (more would only contend).
test: $(STAMP)
	NNTRAIN_QUICK=1 TQDM_DISABLE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadfile \
	    tests chapters --nbval-lax --nbval-current-env --nbval-cell-timeout=300 \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) tests -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

run-notebooks: $(STAMP)
	$(BIN)/python scripts/booktools.py run chapters/*/*.ipynb

clean:
	rm -rf _build $(VENV)
