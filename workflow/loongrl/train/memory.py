"""Memory preflight for a GPU training stage: will one device hold it?

GRPO at LoongRL's lengths (a ~20K-token prompt plus 4K of completion per sequence) runs out of memory in ways that
show only after the job has waited for its GPUs. The estimate adds up, per device, what TRL 1.16 on DeepSpeed
ZeRO-3 (bf16, fp32 master weights) holds at the peak of a training micro-step:

* weights (bf16), gradients (fp32 or bf16: train.grad_accum_dtype) and AdamW state (fp32 master + two moments),
  divided over the ranks by the ZeRO stage; the reference model's bf16 shards when ``beta > 0`` (TRL prepares it
  with the same ZeRO-3 config);
* ZeRO-3's gathered working set: the embedding and the LM head whole while in use, the live-parameter window
  (``stage3_max_live_parameters`` + the prefetch bucket, bf16), and the LM head's full fp32
  gradient, which TRL's chunked LM-head backward accumulates before ZeRO reduce-scatters it
  (trl/kernels/chunked_logprob.py:405-412);
* the LM head's log-prob tiles: TRL never materialises the logits (trl/trainer/utils.py:1640-1655 projects
  4,096 tokens x 32,768 vocabulary entries at a time, completion positions only), plus the fp32 gradient of the
  completion positions' hidden states;
* activations: with gradient checkpointing, every layer's bf16 input (2·s·h bytes per layer) plus one layer
  recomputed in full, counted from what its ops save for backward (``recomputed_layer_bytes``: the SwiGLU MLP's four
  s·I tensors, attention's q/k/v and output, RMSNorm's fp32 upcast) and the backward's transient gradients; without
  it, every layer in full;
* attention beyond that: none for flash attention; sdpa's boolean padding mask (b·s² bytes); eager's scores for the
  layer being recomputed (b·heads·s² in fp32 + bf16);
* vLLM's colocated share (``vllm_gpu_memory_utilization`` of the device) and a fixed framework overhead; with
  ``train.vllm_sleep_mode`` the engine sleeps through the backward, and the peak is the larger of the training
  phase (without vLLM) and the generation phase (the ZeRO-3 states beside vLLM). vLLM's share must also hold the
  whole policy and one sequence's KV cache.

It is an estimate, meant to catch settings that cannot fit (8 sequences of 26K tokens per device), not to shave
the last GiB: it must stay within ``train.memory_margin`` (default 90 %) of ``train.gpu_memory_gib``, the rest
left to allocator fragmentation and what it does not see; the failure message names the key to change and the
largest micro-batch that fits.
``benchmarks/memory_check.py`` compares the per-token terms with a measured GRPO step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loongrl.cli import run, setup_logging
from loongrl.io import write_json

log = logging.getLogger(__name__)

GIB = 1024**3
OVERHEAD_GIB = 3.0  # CUDA context, NCCL buffers
# ZeRO-3's gathered parameters: up to stage3_max_live_parameters stay resident before release, plus the prefetch
# bucket (DeepSpeed's defaults, deepspeed/runtime/zero/config.py:245 and :222; accelerate's config from
# workflow/accelerate/zero3.yaml sets neither), bf16
DS_MAX_LIVE_PARAMETERS = 1_000_000_000
DS_PREFETCH_BUCKET = 50_000_000
# The share of train.gpu_memory_gib the estimate may fill (train.memory_margin's default): the rest is the
# allocator's fragmentation and what the estimate does not see
MEMORY_MARGIN = 0.9


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a decoder-only transformer (read from its config.json)."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ModelShape:
        return cls(
            layers=cfg["num_hidden_layers"],
            hidden=cfg["hidden_size"],
            intermediate=cfg["intermediate_size"],
            vocab=cfg["vocab_size"],
            heads=cfg["num_attention_heads"],
            kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
            tied=bool(cfg.get("tie_word_embeddings", False)),
        )

    @property
    def embedding(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head_dim = self.hidden // self.heads
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        mlp = 3 * self.hidden * self.intermediate
        per_layer = attn + mlp + 2 * self.hidden
        return self.embedding * (1 if self.tied else 2) + self.layers * per_layer + self.hidden


LOGPROB_TOKEN_CHUNK = 4096  # trl/kernels/chunked_logprob.py:31 (TOKEN_CHUNK_SIZE)
LOGPROB_VOCAB_CHUNK = 32768  # trl/trainer/utils.py:1506 (_CHUNKED_LOGPROB_CHUNK_SIZE)


def recomputed_layer_bytes(shape: ModelShape) -> int:
    """Bytes per token one decoder layer keeps for backward (bf16 activations, fp32 RMSNorm), plus the backward's
    transient gradients of its widest tensors.

    Attention: its input, q, k, v, rotated q/k and output (bf16), the softmax statistics (fp32 per head). MLP: the
    input, gate and up projections, silu(gate) and the product fed to down_proj (4 x I, bf16). Two RMSNorms,
    each upcasting to fp32 (input and normalised output, 8·h). Backward: the MLP's gradients live at once (the
    product's, silu(gate)'s and up's: 3 x I) and those of the layer input and residual (2 x h), bf16.
    """
    h, i = shape.hidden, shape.intermediate
    kv = shape.kv_heads * (h // shape.heads)
    attention = 2 * (4 * h + 3 * kv) + 4 * shape.heads
    mlp = 2 * (h + 4 * i)
    norms = 2 * 8 * h
    backward = 2 * (3 * i + 2 * h)
    return attention + mlp + norms + backward


def estimate(
    shape: ModelShape,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    per_device_batch: int,
    world_size: int,
    zero_stage: int = 3,
    gradient_checkpointing: bool = True,
    vllm_fraction: float = 0.0,
    gpu_gib: float = 80.0,
    reference_model: bool = True,
    attention: str = "flash_attention_2",
    grad_bytes: int = 4,
    vllm_sleeps: bool = False,
    dtype_bytes: int = 2,
) -> dict[str, float]:
    """GiB per device for each part, and ``total``. ``grad_bytes``: the accumulated gradient partition's bytes per
    parameter (4: fp32, ``train.grad_accum_dtype``; 2: bf16, DeepSpeed's default for a bf16 model).
    ``dtype_bytes``: the weights' and activations' bytes (2: bf16 on GPUs; 4: fp32, how the CPU trains,
    ``grpo.model_init_kwargs``); the per-token terms are counted in bf16 and scale with it."""
    p, s, b, h = shape.params, prompt_tokens + completion_tokens, per_device_batch, shape.hidden
    scale = dtype_bytes / 2
    shard = max(world_size, 1)
    heads = shape.heads
    head_matrices = 1 if shape.tied else 2
    layer = recomputed_layer_bytes(shape)
    parts = {
        "weights": dtype_bytes * p / (shard if zero_stage >= 3 else 1),
        "gradients": grad_bytes * p / (shard if zero_stage >= 2 else 1),
        "optimizer": 12 * p / (shard if zero_stage >= 1 else 1),
        "reference": (dtype_bytes * p / (shard if zero_stage >= 3 else 1)) if reference_model else 0,
        "zero3_gathered": 2 * shape.embedding * head_matrices if zero_stage >= 3 else 0,
        "zero3_live_window": 2 * (min(DS_MAX_LIVE_PARAMETERS, p) + DS_PREFETCH_BUCKET) if zero_stage >= 3 else 0,
        "lm_head_grad": 4 * shape.embedding,
        "activations": scale
        * b
        * s
        * (2 * h * shape.layers + layer if gradient_checkpointing else layer * shape.layers),
        "lm_head_tiles": scale
        * 2
        * min(b * completion_tokens, LOGPROB_TOKEN_CHUNK)
        * min(shape.vocab, LOGPROB_VOCAB_CHUNK)
        + 4 * b * completion_tokens * h,
        "attention": {
            "flash_attention_2": 0,
            "sdpa": b * s * s,
            "eager": b * heads * s * s * 6,
        }[attention],
    }
    out = {k: v / GIB for k, v in parts.items()}
    out["vllm"] = vllm_fraction * gpu_gib
    out["overhead"] = OVERHEAD_GIB
    if vllm_sleeps:
        # TRL puts the colocated engine to sleep at level 2 after each generation (weights and KV cache released,
        # trl/generation/vllm_generation.py:750-752) and wakes it for the next (:704, weights re-synced at :589):
        # vLLM's share and the backward's activations are never resident together. The generation phase holds
        # the ZeRO-3 states, the engine and the overhead.
        states = ("weights", "gradients", "optimizer", "reference", "overhead")
        training = sum(v for k, v in out.items() if k != "vllm")
        generation = sum(out[k] for k in states) + out["vllm"]
        out["total"] = max(training, generation)
    else:
        out["total"] = sum(out.values())
    return out


def vllm_kv_problem(shape: ModelShape, *, vllm_gib: float, sequence_tokens: int) -> str | None:
    """The colocated engine (tensor parallel 1) holds the whole bf16 policy; what is left of its share is KV cache,
    which must hold one sequence of the longest prompt + completion or vLLM refuses to start."""
    head_dim = shape.hidden // shape.heads
    kv_per_token = 2 * shape.layers * shape.kv_heads * head_dim * 2
    weights = 2 * shape.params / GIB
    kv_gib = vllm_gib - weights
    need = kv_per_token * sequence_tokens / GIB
    if kv_gib >= need:
        return None
    return (
        f"config key 'train.vllm_gpu_memory_utilization': vLLM's {vllm_gib:.1f} GiB hold the {weights:.1f} GiB policy "
        f"and {max(kv_gib, 0):.1f} GiB of KV cache, less than one {sequence_tokens}-token sequence needs "
        f"({need:.1f} GiB)"
    )


def checkpoint_gib(shape: ModelShape) -> float:
    """One resumable ZeRO-3 checkpoint on disk: bf16 weight shards, fp32 master weights and two Adam moments
    (DeepSpeed's global_stepN), and the consolidated bf16 model (zero3_save_16bit_model)."""
    return (2 + 12 + 2) * shape.params / GIB


def largest_batch(
    shape: ModelShape, gpu_gib: float, *, divides: int | None = None, limit_gib: float | None = None, **kwargs: Any
) -> int:
    """The largest per-device micro-batch whose estimate fits under ``limit_gib`` (default: the whole device; 0 if
    not even one sequence does).

    With ``divides`` (completions per optimizer step / ranks) only batches that divide it count, so the answer is
    one the gradient-accumulation check accepts.
    """
    limit = gpu_gib if limit_gib is None else limit_gib
    best, b = 0, 1
    while b <= 256 and estimate(shape, per_device_batch=b, gpu_gib=gpu_gib, **kwargs)["total"] <= limit:
        if divides is None or divides % b == 0:
            best = b
        b += 1
    return best


def check(
    shape: ModelShape, train: dict[str, Any], *, prompt_tokens: int, zero_stage: int = 3
) -> tuple[dict[str, float], list[str]]:
    """The estimate for a ``train`` config section, and what to change when it does not fit."""
    gpu_gib = train["gpu_memory_gib"]
    kwargs = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": train["max_completion_length"],
        "world_size": train["gpus"] * train["nodes"],
        "zero_stage": zero_stage,
        "gradient_checkpointing": train["gradient_checkpointing"],
        "vllm_fraction": train["vllm_gpu_memory_utilization"]
        if train["generation"] == "vllm" and train["vllm_mode"] == "colocate"
        else 0.0,
        "reference_model": train["beta"] > 0,
        "attention": train["attn_implementation"],
        "grad_bytes": 4 if train.get("grad_accum_dtype", "fp32") == "fp32" else 2,
        "vllm_sleeps": bool(train.get("vllm_sleep_mode")),
    }
    est = estimate(shape, per_device_batch=train["per_device_batch"], gpu_gib=gpu_gib, **kwargs)
    problems = []
    if kwargs["vllm_fraction"]:
        kv = vllm_kv_problem(
            shape, vllm_gib=est["vllm"], sequence_tokens=prompt_tokens + train["max_completion_length"]
        )
        problems += [kv] if kv else []
    per_rank = train["prompts_per_step"] * train["num_generations"] // max(1, kwargs["world_size"])
    too_big = fit_problem(
        shape,
        train,
        est,
        kwargs,
        capacity_gib=gpu_gib,
        divides=per_rank,
        need="per GPU ",
        capacity=("train.gpu_memory_gib", f"{gpu_gib}"),
        last_resort="enable train.gradient_checkpointing, add GPUs (train.gpus/nodes), "
        "lower train.vllm_gpu_memory_utilization or mixture.max_prompt_tokens",
    )
    return est, problems + ([too_big] if too_big else [])


def fit_problem(
    shape: ModelShape,
    train: dict[str, Any],
    est: dict[str, float],
    kwargs: dict[str, Any],
    *,
    capacity_gib: float,
    divides: int,
    need: str,
    capacity: tuple[str, str],
    last_resort: str,
    tokens_verb: str = "",
) -> str | None:
    """What to change when ``est`` passes ``train.memory_margin`` of a capacity (a GPU, or the host's RAM on the
    CPU): the message names train.per_device_batch and the largest micro-batch that fits (one that ``divides`` the
    completions each rank holds a step), or the ``last_resort`` settings when not even one sequence fits. One
    reading for both checks, so their limits and hints cannot drift apart."""
    margin = train.get("memory_margin", MEMORY_MARGIN)
    limit = margin * capacity_gib
    if est["total"] <= limit:
        return None
    fits = largest_batch(shape, capacity_gib, divides=divides, limit_gib=limit, **kwargs)
    hint = (
        f"lower train.per_device_batch to {fits} (train.prompts_per_step is kept by gradient accumulation)"
        if fits
        else f"not even one sequence fits: {last_resort}"
    )
    parts = ", ".join(f"{k} {v:.1f}" for k, v in est.items() if k != "total")
    name, shown = capacity
    return (
        f"config key 'train.per_device_batch': {train['per_device_batch']} sequences of "
        f"{kwargs['prompt_tokens']} + {train['max_completion_length']} tokens {tokens_verb}need ~{est['total']:.1f} "
        f"GiB {need}({parts}), more than train.memory_margin x {name} = {margin} x {shown} = {limit:.1f} GiB; "
        f"{hint}"
    )


def host_memory_gib() -> float:
    """The RAM this process may use: the machine's, or its cgroup's limit when lower (a container, a SLURM job
    confined by cgroups)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value.isdigit():
            total = min(total, int(value))
    return total / GIB


def cpu_check(
    shape: ModelShape, train: dict[str, Any], *, prompt_tokens: int, host_gib: float, dtype_bytes: int = 4
) -> tuple[dict[str, float], list[str]]:
    """The same estimate for a stage that trains on the CPU, against the host's RAM.

    The preflight rule checks ``train.gpu_memory_gib`` (the cluster's GPUs) before a job is queued; whether a stage
    lands on a GPU is known only inside the job, so a CPU stage checks itself at start-up, at the longest prompt
    of its own data. It runs as one process in the dtype the stage loads (``dtype_bytes``: fp32 on the CPU, as
    ``grpo.model_init_kwargs`` decides), without ZeRO or vLLM, with PyTorch's sdpa. Without this check a laptop
    stage whose group of 8 does not fit in RAM runs for minutes and is ended by the kernel's OOM killer (measured:
    KeyChain-nano, 8 sequences of ~1,300 tokens, SmolLM2-135M: killed at 21.6 GB RSS on a 24 GB machine), with
    nothing in its log that names the setting to change.
    """
    kwargs = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": train["max_completion_length"],
        "world_size": 1,
        "zero_stage": 0,
        "gradient_checkpointing": train["gradient_checkpointing"],
        "reference_model": train["beta"] > 0,
        "attention": "sdpa",
        "grad_bytes": 4,
        "dtype_bytes": dtype_bytes,
    }
    est = estimate(shape, per_device_batch=train["per_device_batch"], gpu_gib=host_gib, **kwargs)
    too_big = fit_problem(
        shape,
        train,
        est,
        kwargs,
        capacity_gib=host_gib,
        divides=train["prompts_per_step"] * train["num_generations"],
        need="",
        capacity=("this host's RAM", f"{host_gib:.1f}"),
        last_resort="enable train.gradient_checkpointing or lower mixture.max_prompt_tokens",
        tokens_verb=f"trained on the CPU ({'fp32' if dtype_bytes == 4 else f'{dtype_bytes}-byte'}) ",
    )
    return est, [too_big] if too_big else []


RUNTIME_UNITS_H = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0}


def step_hours(shape: ModelShape, train: dict[str, Any], *, mean_prompt_tokens: float) -> dict[str, float]:
    """Hours of one optimizer step from two stated throughput assumptions (``train.assumed_train_tflops``: effective
    bf16 TFLOP/s per GPU of the training passes; ``train.assumed_decode_tokens_per_s``: vLLM's decode tokens/s per
    GPU), for prompts of the stage mixture's mean length and a full completion on every sample (an upper bound on
    the completion side).

    Training, per token: 6 N for forward and backward plus 2 N for gradient checkpointing's recomputed forward, 2 N
    for the reference model's forward when beta > 0, and causal attention's 2 L h s per forward (s: the sequence
    length; forward, backward and recompute: 4 of them). Generation: one prefill per prompt (vLLM's prefix caching
    serves the G samples) and G x completion decoded tokens per prompt. Padding is not computed (padding_trimmed).
    """
    n = shape.params - shape.embedding  # the input embedding is a lookup, not a matmul
    s = mean_prompt_tokens + train["max_completion_length"]
    seqs = train["prompts_per_step"] * train["num_generations"]
    gpus = max(1, train["gpus"]) * train["nodes"]
    attn = 2 * shape.layers * shape.hidden * s
    per_token = (8 if train["gradient_checkpointing"] else 6) * n + 4 * attn
    if train["beta"] > 0:
        per_token += 2 * n + attn
    prefill = train["prompts_per_step"] * mean_prompt_tokens * (2 * n + attn)
    flops = seqs * s * per_token + prefill
    train_h = flops / (gpus * train["assumed_train_tflops"] * 1e12) / 3600
    decode = seqs * train["max_completion_length"]
    decode_h = decode / (gpus * train["assumed_decode_tokens_per_s"]) / 3600
    return {"training_h": train_h, "generation_h": decode_h, "step_h": train_h + decode_h}


def schedule(
    shape: ModelShape, train: dict[str, Any], mixtures: dict[str, dict[str, float]]
) -> tuple[dict[str, Any], list[str]]:
    """Each stage's estimated hours (``step_hours`` on its mixture's mean prompt length; stage II on stage I's, whose
    subset it is; ``steps: epoch`` as the mixture's full batches) against what its jobs may run: ``job_runtime`` x
    (``job_retries`` + 1), since a stage killed at its limit resumes in the next retry. A stage over it is a
    warning: the throughputs are assumptions (``make gpu-smoke`` measures the training half on a GPU)."""
    val, unit = int(train["job_runtime"][:-1]), train["job_runtime"][-1]
    budget = val * RUNTIME_UNITS_H[unit] * (train["job_retries"] + 1)
    stages, warnings = {}, []
    for name, st in train["stages"].items():
        mix = mixtures.get("stage1" if st["data"] == "stage2" else st["data"])
        if mix is None:
            stages[name] = None
            continue
        steps = st["steps"] if isinstance(st["steps"], int) else int(mix["rows"] // train["prompts_per_step"])
        step = step_hours(shape, train, mean_prompt_tokens=mix["mean_prompt_tokens"])
        hours = steps * step["step_h"]
        stages[name] = {"steps": steps, "step_h": round(step["step_h"], 3), "hours": round(hours, 1)}
        if hours > budget:
            warnings.append(
                f"stage {name}: {steps} steps need ~{hours:.0f} h at ~{step['step_h']:.2f} h a step (assumed "
                f"train.assumed_train_tflops = {train['assumed_train_tflops']}, train.assumed_decode_tokens_per_s = "
                f"{train['assumed_decode_tokens_per_s']}), more than train.job_runtime x (train.job_retries + 1) = "
                f"{train['job_runtime']} x {train['job_retries'] + 1} = {budget:.0f} h: raise config key "
                "'train.job_retries' or 'train.job_runtime', or add GPUs (train.nodes)"
            )
    return {"budget_h": budget, "stages": stages}, warnings


def mixture_stats(path: Path) -> dict[str, float]:
    """Rows, mean and longest prompt tokens of a mixture parquet (its ``prompt_tokens`` column)."""
    import pyarrow.parquet as pq

    tokens = pq.read_table(path, columns=["prompt_tokens"]).column("prompt_tokens").to_pylist()
    return {
        "rows": len(tokens),
        "mean_prompt_tokens": sum(tokens) / max(1, len(tokens)),
        "max_prompt_tokens": max(tokens, default=0),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.train.memory", description=__doc__)
    ap.add_argument("--model", type=Path, required=True, help="the policy's HF folder (its config.json)")
    ap.add_argument("--params", required=True, help="JSON of the config's train section")
    ap.add_argument("--prompt-tokens", type=int, required=True, help="longest prompt (mixture.max_prompt_tokens)")
    ap.add_argument("--mixture", nargs="*", default=[], metavar="STAGE=PATH", help="the mixtures the stages train on")
    ap.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    setup_logging()
    shape = ModelShape.from_config(json.loads((args.model / "config.json").read_text()))
    est, problems = check(shape, json.loads(args.params), prompt_tokens=args.prompt_tokens)
    train = json.loads(args.params)
    mixtures = {k: mixture_stats(Path(v)) for k, v in (m.split("=", 1) for m in args.mixture)}
    plan, late = schedule(shape, train, mixtures)
    ckpt = checkpoint_gib(shape)
    report = {
        "model": str(args.model),
        "shape": asdict(shape),
        "params": shape.params,
        "estimate_gib": est,
        "checkpoint_gib": ckpt,
        # save_total_limit rotated checkpoints, plus the best one when a stage keeps it beyond them
        "checkpoints_on_disk_gib": ckpt * (train["save_total_limit"] + 1),
        "mixtures": mixtures,
        "schedule": plan,
        "schedule_warnings": late,
    }
    if problems:
        raise SystemExit("memory preflight failed:\n  " + "\n  ".join(problems))
    write_json(report, args.output)
    log.info("memory preflight: ~%.1f GiB per GPU of %s: %s", est["total"], train["gpu_memory_gib"], est)
    log.info("one resumable checkpoint ~%.0f GiB; up to %d on disk", ckpt, train["save_total_limit"] + 1)
    log.info("stages at the assumed throughput: %s; %.0f h per stage allowed", plan["stages"], plan["budget_h"])
    for w in late:
        log.warning("%s", w)


if __name__ == "__main__":
    run(main)
