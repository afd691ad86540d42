# `make demo` and `make test` do all set-up on a fresh machine (CPU): virtual environment, CPU torch 2.13.0,
# FFmpeg libraries for torchcodec (Debian's ffmpeg, when we can install it), libLLVM >= 16 for the photoreal
# renderer's CPU backend (Debian's libllvm19; Dr.Jit aborts on the older libLLVM 15), the package with its light extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vidalign-installed
PYTEST_WORKERS ?= 2
# photoreal (mitsuba + drjit + pyoidn, ~156 MB of wheels) lets CI run the mitsuba renderer tests; drop it to skip them
EXTRAS ?= dev,sim,decord,ray,s3,torchcodec,exr,photoreal,tensorboard

.PHONY: setup demo test lint bench clean system-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first (a local wheel here): with it installed, no dependency can pull a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

system-deps:
	@if ! ldconfig -p 2>/dev/null | grep -q libavcodec; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's ffmpeg (FFmpeg libraries for torchcodec)"; \
	    (apt-get install -y -qq ffmpeg >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null)) \
	      || echo "warning: could not install ffmpeg; datasets' Video feature will fall back to vidalign's readers"; \
	  else echo "note: FFmpeg libraries not found; install Debian's ffmpeg for datasets' Video decoding"; fi; \
	fi
	@if ! ldconfig -p 2>/dev/null | grep -Eq 'libLLVM(-|\.so\.)(1[6-9]|[2-9][0-9])'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's libllvm19 (LLVM >= 16 for the mitsuba renderer's CPU backend)"; \
	    (apt-get install -y -qq libllvm19 >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq libllvm19 >/dev/null)) \
	      || echo "warning: could not install libllvm19; the mitsuba renderer will use its slower scalar_rgb variant"; \
	  else echo "note: no libLLVM >= 16 found; install libllvm19 (or set DRJIT_LIBLLVM_PATH) for the mitsuba renderer"; fi; \
	fi

demo: setup
	$(PY) scripts/demo.py

lint: setup
	$(VENV)/bin/ruff check .

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --durations=15

bench: setup
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_out build *.egg-info
