# Two entry points a new user needs: `make demo` and `make test`.
# torch is installed first and pinned, so a CPU machine takes the CPU wheel and never a CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test lint browser fuzz clean

$(BIN)/dentpy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(BIN)/dentpy

install: $(BIN)/dentpy

demo: install
	$(BIN)/dentpy demo

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The HTML report is tested in a real browser: Debian's Chromium, installed when missing.
browser:
	@test -x /usr/bin/chromium || { \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: lint browser
	$(BIN)/pytest -q

# Fuzz the readers with many more examples than CI (RELIABILITY A11); override the count
# with `make fuzz DENTPY_FUZZ_EXAMPLES=20000`.
fuzz: install
	DENTPY_FUZZ_EXAMPLES=$${DENTPY_FUZZ_EXAMPLES:-5000} $(BIN)/pytest -q -p no:logging \
		tests/test_fuzz_readers.py tests/test_dicom_series_fuzz.py tests/test_image2d.py -k fuzz

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dentpy-demo
