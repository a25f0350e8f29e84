# The two commands of the README: `make demo` and `make test`. Both create the
# virtualenv and install what they need when missing.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Only for its CLIP BPE vocabulary file (MIT), read by the reference tests; --no-deps
# keeps torch out.
OPEN_CLIP := open_clip_torch==3.3.0

.PHONY: demo test lint browser bench db-stop clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps $(OPEN_CLIP)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) manage.py demo

test: $(STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m pytest

# The admin's browser test drives Debian's Chromium (no browser download). Installed
# here when missing and we are root; otherwise that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed and we are not root: the browser test will be skipped"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

db-stop: $(STAMP)
	$(PY) -m config.embedded_postgres stop

clean: db-stop
	rm -rf $(VENV) var .pgdata
