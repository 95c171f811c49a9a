# flexround-mcu: the two commands of the README.
#   make demo   set everything up (apt toolchain, .venv, pinned packages, the project) and run the main job
#   make test   set up (idempotent) and run the test suite
# FLEXROUND_MCU_DATA names the data folder (layout of shared/data); the default here is ../shared/data.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
export FLEXROUND_MCU_DATA ?= $(abspath ../shared/data)

.PHONY: setup toolchain venv demo test bench clean

setup: toolchain venv

toolchain:
	bash scripts/install_toolchain.sh

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# torch==2.13.0 resolves to the CPU wheel on disk; tensorflow-cpu/tflite-micro are the oracle's pins.
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[torch,tf,dev]' 2>&1 | { grep -v "is ignored" || true; }
	$(VENV)/bin/python -c "import flexround_mcu, tflite_micro, torch, numpy; print('venv ready: torch', torch.__version__)"
	touch $@

venv: $(VENV)/.installed

# The main job: ResNet-8 quantized with FlexRound (W4A8) to C, built for the Cortex-M7 and run under QEMU, bit for
# bit against the integer simulator; then the simulator against TFLite Micro on the reference int8 model.
demo: setup
	$(VENV)/bin/flexround-mcu export resnet8 --target cortex-m7 --out out/resnet8-cortex-m7
	$(VENV)/bin/flexround-mcu simulate $(FLEXROUND_MCU_DATA)/mlperf_tiny/ic/pretrainedResnet_quant.tflite \
	    --dataset cifar10-test-5000 --limit 500 --compare tflm --json out/simulate_resnet8.json

test: setup
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python benchmarks/sim_throughput.py

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis
