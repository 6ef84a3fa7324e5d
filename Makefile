# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch: installed as the pinned CPU build only when the venv has none, so an existing CUDA build
# (e.g. `make VENV_FLAGS=--system-site-packages` over a CUDA install) is kept.

PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
DEMO := build/demo
SHARED_LOG := ../shared/traces/mixtral-8x7b-gsm8k.jsonl

.PHONY: install demo test browser bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,report]"
	touch $@

demo: install
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(VENV)/bin/moecache checkpoint tiny $(DEMO)/tiny-mixtral --arch mixtral --layers 4 --experts 8
	$(VENV)/bin/moecache record $(DEMO)/tiny-mixtral -p "The cache holds experts." -p "Edge boxes need care." \
		--max-new-tokens 24 --ignore-eos --lookahead -o $(DEMO)/tiny.parquet
	$(VENV)/bin/moecache traces info $(DEMO)/tiny.parquet
	@if [ -f $(SHARED_LOG) ]; then \
		$(VENV)/bin/moecache traces import $(SHARED_LOG) -m mixtral-8x7b -o $(DEMO)/gsm8k.parquet; \
	else \
		echo "($(SHARED_LOG) not found: using the built-in sample trace instead)"; \
		cp data/samples/mixtral-synth.parquet $(DEMO)/gsm8k.parquet; \
	fi
	$(VENV)/bin/moecache traces stats $(DEMO)/tiny.parquet $(DEMO)/gsm8k.parquet data/samples/mixtral-synth.parquet
	$(VENV)/bin/moecache simulate $(DEMO)/gsm8k.parquet -p lru -p lfu -p watermark --per-layer --vram-experts 4 \
		--ram-experts 8 --prefetch transitions -o $(DEMO)/runs.parquet
	$(VENV)/bin/moecache pack $(DEMO)/tiny-mixtral -o $(DEMO)/tiny-mixtral-packed
	$(VENV)/bin/moecache run $(DEMO)/tiny.parquet -w $(DEMO)/tiny-mixtral-packed -p lru --vram-experts 6 \
		--ram-experts 16 --prefetch lookahead --device cpu --no-live -o $(DEMO)/run.parquet
	$(VENV)/bin/moecache traces synth --like qwen3-30b-a3b --requests 4 -o $(DEMO)/qwen3.parquet --quiet
	$(VENV)/bin/moecache compare $(DEMO)/gsm8k.parquet $(DEMO)/qwen3.parquet -p lru -p lfu -p watermark \
		--prefetch none --prefetch transitions --vram-active 0.5:2:4 --exclusive -o $(DEMO)/compare
	@echo "moecache demo: the report is $(DEMO)/compare/report.html (and report.md beside it)"

test: install browser
	$(PY) -m pytest -q

# The report test opens the HTML in headless Chromium: installed here where the package manager allows
# it (root on Debian or Ubuntu); elsewhere that test is skipped with a message.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		timeout 600 apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } || \
		echo "(chromium not installed: the headless report test will be skipped)"

bench: install
	$(PY) bench/record_overhead.py
	$(PY) bench/synth_speed.py
	$(PY) bench/simulator_vs_libcachesim.py
	$(PY) bench/kernel.py
	$(PY) bench/engine.py

clean:
	rm -rf build $(VENV) *.egg-info
