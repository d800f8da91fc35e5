"""GRPO stage runner on TRL's ``GRPOTrainer`` (paper §3.2, §4.1).

What TRL already does is used as is: group sampling, advantages, the clipped token-level loss, the k3 KL estimate,
vLLM generation (colocate or server), DeepSpeed/FSDP via Accelerate, checkpoints. Written here is only what TRL lacks:

* the mapping from ``config.yaml`` to ``GRPOConfig`` (paper values: G=8, beta=0.001, lr 1e-6 cosine, clip 1.0,
  T=0.6, top-p 0.95, 4,096 new tokens, 512 prompts per step through gradient accumulation);
* resumable stages: checkpoints live in a work folder that Snakemake never deletes; a rerun resumes from the last
  one (model, optimizer, scheduler, RNG and data position, via the Trainer), and the per-step metrics log is cut
  back to that step so no step appears twice;
* per-step metrics as JSONL, a summary JSON, and the final model as a plain HF folder (loadable by transformers
  and vLLM).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from loongrl.cli import run, setup_logging
from loongrl.inference import pick_device
from loongrl.io import StageError, atomic_path, write_json
from loongrl.train.rewards import HackMonitor, make_reward_fns, monitor_metrics
from loongrl.train.tracking import finish_tracking, git_commit, log_mlflow_metrics, start_tracking
from loongrl.verifiers import RewardRules

log = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def prompts_per_step_to_accumulation(prompts: int, group: int, per_device: int, world: int) -> int:
    """Gradient-accumulation steps so one optimizer step sees ``prompts`` prompts × ``group`` completions.

    TRL counts completions: a step consumes per_device × accumulation × world completions.
    """
    completions = prompts * group
    per_pass = per_device * world
    if completions % per_pass:
        raise ValueError(
            f"{prompts} prompts x {group} generations = {completions} completions is not divisible by "
            f"per_device_batch ({per_device}) x world size ({world})"
        )
    return completions // per_pass


def grpo_kwargs(
    train: dict[str, Any],
    steps: int,
    output_dir: Path,
    *,
    world_size: int = 1,
    gpu: bool = False,
    seed: int = 42,
    report_to: str = "none",
    select_best: bool = False,
) -> dict[str, Any]:
    """GRPOConfig arguments from the config's ``train`` section (values and sources in config.yaml).

    ``select_best`` evaluates on the validation slice at every save and keeps the best checkpoint as the result.
    """
    accum = prompts_per_step_to_accumulation(
        train["prompts_per_step"], train["num_generations"], train["per_device_batch"], world_size
    )
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_generations": train["num_generations"],
        "beta": train["beta"],
        "epsilon": train["clip_epsilon"],
        "loss_type": train["loss_type"],
        "learning_rate": train["learning_rate"],
        "lr_scheduler_type": train["lr_scheduler"],
        "max_grad_norm": train["max_grad_norm"],
        "temperature": train["temperature"],
        "top_p": train["top_p"],
        "max_completion_length": train["max_completion_length"],
        "per_device_train_batch_size": train["per_device_batch"],
        "gradient_accumulation_steps": accum,
        "gradient_checkpointing": train["gradient_checkpointing"],
        # bf16 on GPU; also wherever `accelerate launch` asks for it (the ZeRO-3 config does), since DeepSpeed
        # refuses a TrainingArguments/DeepSpeed precision mismatch (on CPU this runs the GPU path's bf16 too).
        "bf16": gpu or os.environ.get("ACCELERATE_MIXED_PRECISION") == "bf16",
        "use_cpu": not gpu,
        "max_steps": steps,
        "save_steps": train["save_steps"],
        "save_total_limit": train["save_total_limit"],
        "logging_steps": 1,
        "seed": seed,
        "data_seed": seed,
        "report_to": report_to,
        "use_vllm": gpu and train["generation"] == "vllm",
        "vllm_mode": train["vllm_mode"],
        "vllm_gpu_memory_utilization": train["vllm_gpu_memory_utilization"],
        # level-2 sleep after every generation: vLLM's share is free during the backward
        # (trl/generation/vllm_generation.py:750-752; weights re-synced on wake, :589)
        "vllm_enable_sleep_mode": train["vllm_sleep_mode"],
        # GRPO as in the paper's Eq. 1 and verl: no correction for the rollout engine's sampling distribution.
        # TRL 1.16 turns it on by default (trl/trainer/grpo_config.py:925, mode sequence_mask), with vLLM's
        # top-p-renormalised log-probs against the trainer's full-vocabulary ones, so a long completion's ratio is
        # exp(sum of log nucleus mass) and its policy gradient shrinks towards 0 (see tests/test_vllm.py).
        "vllm_importance_sampling_correction": train["vllm_importance_sampling_correction"],
        # verl's low_var_kl is the plain k3 estimate; TRL 1.16 multiplies it by the policy ratio by default
        # (use_bias_correction_kl=True, trl/trainer/grpo_trainer.py:3104), which changes its gradient.
        "use_bias_correction_kl": train["kl_bias_correction"],
        # transformers' process-group timeout (the trainer's, where it creates the group; see init_ranks)
        "ddp_timeout": int(train["dist_timeout_minutes"] * 60),
        "model_init_kwargs": model_init_kwargs(train, gpu=gpu, deepspeed=deepspeed),
        "shuffle_dataset": True,
    }
    if select_best:
        kwargs.update(
            eval_strategy="steps",
            eval_steps=train["save_steps"],
            per_device_eval_batch_size=eval_batch_size(train, world_size),
            metric_for_best_model="eval_reward",
            greater_is_better=True,
            load_best_model_at_end=True,
        )
    return kwargs


def eval_batch_size(train: dict[str, Any], world_size: int) -> int:
    """The per-device validation batch: ``train.per_device_eval_batch`` rounded up so the global batch holds whole
    groups (TRL checks ``per_device_eval_batch_size x world`` is divisible by G). Each eval micro-step is one
    generation call, so 1 would make 16 ranks generate 2 prompts' groups a call."""
    unit = train["num_generations"] // math.gcd(train["num_generations"], world_size)
    return unit * math.ceil(train["per_device_eval_batch"] / unit)


def model_init_kwargs(train: dict[str, Any], *, gpu: bool, deepspeed: bool) -> dict[str, Any]:
    """How TRL loads the policy (and the reference model): ``GRPOTrainer`` defaults to fp32 and transformers'
    default attention (trl/trainer/grpo_trainer.py:171-172), while the memory preflight assumes bf16 weights and
    ``train.attn_implementation``.

    bf16 weights only where DeepSpeed keeps fp32 master weights in its optimizer: a single-process run would
    otherwise train bf16 weights directly, and a 1e-6 learning rate's updates vanish below bf16's resolution.
    On the CPU the attention setting is not applied (flash attention needs CUDA; transformers picks sdpa).
    """
    out: dict[str, Any] = {"dtype": "bfloat16" if gpu and deepspeed else "float32"}
    attn = train["attn_implementation"]
    if gpu:
        if attn == "flash_attention_2":
            import importlib.util

            if importlib.util.find_spec("flash_attn") is None:
                raise RuntimeError(
                    "config key 'train.attn_implementation' is flash_attention_2 (the paper's verl setup), but the "
                    "flash-attn package is not installed in this environment: pip install flash-attn, or set "
                    "train.attn_implementation: sdpa (the memory preflight then counts sdpa's padding mask)"
                )
        out["attn_implementation"] = attn
    return out


def grpo_config(*args: Any, **kwargs: Any):
    """TRL's GRPOConfig for a stage (see ``grpo_kwargs``)."""
    from trl import GRPOConfig

    return GRPOConfig(**grpo_kwargs(*args, **kwargs))


def last_checkpoint(work_dir: Path, world_size: int = 1) -> Path | None:
    """The highest complete ``checkpoint-N`` folder, or None.

    Complete means trainer_state.json (the main process writes it last) and, with several ranks, every rank's
    ``rng_state_<rank>.pth``: each rank writes its own RNG state without waiting for the others
    (transformers/trainer.py:3403-3417), so a job killed just after rank 0 finished can leave another rank's
    missing, and resuming from it would sample different completions on that rank.
    """
    found = []
    for p in work_dir.glob("checkpoint-*"):
        m = CHECKPOINT.match(p.name)
        ranks_done = world_size <= 1 or all((p / f"rng_state_{r}.pth").exists() for r in range(world_size))
        if m and (p / "trainer_state.json").exists() and ranks_done:
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


# `train` keys that shape the SLURM job or the checkpoint bookkeeping, never the trained weights. They are left out of
# a stage's fingerprint: raising `job_runtime` or `job_retries` after a job hit its time limit, or changing a
# stage-II or another stage's key, must resume stage I, not restart it. The world size stays in (the caller's
# `extra`): ZeRO-3 checkpoints are sharded by rank. Every other key (and any key added later) counts.
SCHEDULING_KEYS = frozenset(
    {
        "job_runtime",
        "job_retries",
        "gpus",  # through the world size
        "nodes",  # through the world size
        "gpu_type",
        "cpus_per_gpu",
        "gpu_memory_gib",
        "dist_timeout_minutes",
        "save_steps",
        "save_minutes",
        "save_total_limit",
        "per_device_eval_batch",
        "stages",  # this stage's steps, data and init model are fingerprinted directly
        "select_best",  # the validation slice is in `extra`
        "stage2_rollouts",
        "stage2_backend",
        "stage2_shards",
        "stage2_engine",
    }
)


def run_fingerprint(
    *, model_path: Path, data_path: Path, train: dict[str, Any], steps: int, seed: int, extra: Any
) -> str:
    """What a stage's trained weights depend on: the optimisation and sampling settings, the data's bytes, the init
    model's files, the steps and the seed (``SCHEDULING_KEYS`` excluded).

    Checkpoints live outside Snakemake's outputs so that a killed job can resume; when Snakemake reruns a stage
    because something upstream changed (new data, a retrained init model, other settings), the old checkpoints
    must not be resumed. The fingerprint is stored in the work dir and a mismatch starts the stage afresh.
    """
    weights = {k: v for k, v in train.items() if k not in SCHEDULING_KEYS}
    h = hashlib.sha256(json.dumps([weights, steps, seed, extra], sort_keys=True, default=str).encode())
    with open(data_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    for f in sorted(Path(model_path).rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(model_path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def prepare_work_dir(work_dir: Path, fingerprint: str) -> Path | None:
    """Keep ``work_dir``'s checkpoints only if they were made for the same fingerprint.

    Checkpoints of another run are moved aside, never deleted (they may hold days of GPU time, and a fingerprint
    can change for a reason the user did not intend): to ``<work_dir>.stale-<their fingerprint>``, logged, and
    returned. Delete them by hand once they are not wanted.
    """
    stamp = work_dir / "FINGERPRINT"
    aside = None
    if work_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
        if any(p.name != "FINGERPRINT" for p in work_dir.iterdir()):
            old = stamp.read_text().strip() if stamp.exists() else "unstamped"
            aside = work_dir.with_name(f"{work_dir.name}.stale-{old}")
            n = 1
            while aside.exists():
                aside, n = work_dir.with_name(f"{work_dir.name}.stale-{old}.{n}"), n + 1
            work_dir.rename(aside)
            log.warning(
                "%s holds checkpoints of another run (fingerprint %s, this run %s): moved to %s; this stage starts "
                "afresh",
                work_dir,
                old,
                fingerprint,
                aside,
            )
        else:
            shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")
    return aside


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines after ``step`` (they were logged by a run killed before its next checkpoint)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))


def set_gradient_dtypes(trainer: Any, train: dict[str, Any]) -> None:
    """ZeRO-3's gradient precision, by DeepSpeed's own config keys (``train.grad_accum_dtype`` ->
    ``data_types.grad_accum_dtype``, ``train.reduce_dtype`` -> ``communication_data_type``), on the DeepSpeed config
    the job runs with (accelerate's plugin, built from workflow/accelerate/zero3.yaml). It must be set before
    ``train()``: the engine is created in accelerate's ``prepare`` there and reads them once
    (deepspeed/runtime/engine.py:1801-1810 ``get_data_types``, 1719 ``communication_data_type``; the ZeRO-3
    optimizer gets both, engine.py:2782-2783). Without DeepSpeed (CPU, one GPU) nothing is accumulated across ranks
    and transformers accumulates in the parameters' own gradients."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    plugin.deepspeed_config["data_types"] = {"grad_accum_dtype": train.get("grad_accum_dtype", "fp32")}
    plugin.deepspeed_config["communication_data_type"] = train.get("reduce_dtype", "fp32")


def gradient_dtypes(trainer: Any) -> dict[str, str] | None:
    """The gradient dtypes the running DeepSpeed engine reports (None without DeepSpeed): what the stage's summary
    records, read back rather than assumed."""
    engine = getattr(trainer, "model_wrapped", None)
    if engine is None or not hasattr(engine, "get_data_types"):
        return None
    model_dtype, accum = engine.get_data_types()
    optimizer = getattr(engine, "optimizer", None)
    return {
        "model": str(model_dtype).removeprefix("torch."),
        "grad_accum": str(accum).removeprefix("torch."),
        "reduce": str(engine.communication_data_type).removeprefix("torch."),
        "zero3_partition": str(getattr(optimizer, "gradient_accumulation_dtype", None)).removeprefix("torch."),
    }


def epoch_ordered(trainer_cls: type) -> type:
    """``trainer_cls`` (TRL's GRPOTrainer) whose prompt order is a function of (seed, epoch) alone.

    TRL's ``RepeatSampler`` seeds its generator once, at construction (trl/trainer/utils.py:926-928), and draws
    each epoch's permutation from where the generator stands (:933). A requeued job builds a new sampler and
    resumes inside epoch e >= 1 (transformers/trainer.py:1673, 1887-1891 skips the epoch's trained batches), so it
    would replay epoch 0's permutation: prompts seen twice, others never. Here the generator is re-seeded with
    seed + epoch before every permutation, and the epoch comes from the trainer's state at every epoch start
    (``on_epoch_begin``; the state is restored from the checkpoint before that), so a resumed epoch sees the
    order the uninterrupted run would have. transformers also calls ``set_epoch`` directly on one process
    (trainer.py:1896-1903); under accelerate's ``BatchSamplerShard`` that call does not reach the sampler, the
    callback does.
    """
    from transformers import TrainerCallback
    from trl.trainer.utils import RepeatSampler

    class EpochRepeatSampler(RepeatSampler):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            if self.shuffle:
                self.generator.manual_seed((self.seed or 0) + self.epoch)
            return super().__iter__()

    class EpochOrder(TrainerCallback):
        def __init__(self, samplers: list[EpochRepeatSampler]):
            self.samplers = samplers

        def on_epoch_begin(self, args, state, control, **kwargs):
            # state.epoch is epoch + (step + 1) / steps_in_epoch: whole at an epoch's start, e.g. 1.5 on a resume
            for s in self.samplers:
                s.set_epoch(int((state.epoch or 0.0) + 1e-6))

    class EpochOrderedTrainer(trainer_cls):
        def __init__(self, *args, callbacks=None, **kwargs):
            self.epoch_samplers: list[EpochRepeatSampler] = []
            super().__init__(*args, callbacks=[*(callbacks or []), EpochOrder(self.epoch_samplers)], **kwargs)

        def _get_train_sampler(self, dataset=None):
            base = super()._get_train_sampler(dataset)
            sampler = EpochRepeatSampler(
                data_source=base.data_source,
                mini_repeat_count=base.mini_repeat_count,
                batch_size=base.batch_size,
                repeat_count=base.repeat_count,
                shuffle=base.shuffle,
                seed=base.seed,
            )
            self.epoch_samplers.append(sampler)
            return sampler

    return EpochOrderedTrainer


def pad_columns(attention_mask, logits_to_keep: int) -> tuple[int, int]:
    """(leading, trailing) columns of a micro-batch that every row pads: TRL left-pads prompts and right-pads
    completions to the longest of the rank's whole generation batch (trl/trainer/grpo_trainer.py:2443-2461), so a
    micro-batch of short rows carries the long rows' width. The completion region (the last ``logits_to_keep``
    columns) keeps at least one column and is never cut from the left."""
    used = attention_mask.any(dim=0).nonzero()
    width = attention_mask.size(1)
    if used.numel() == 0:
        return 0, 0
    leading = min(int(used[0]), width - logits_to_keep)
    trailing = min(width - 1 - int(used[-1]), logits_to_keep - 1)
    return leading, trailing


def padding_trimmed(trainer_cls: type) -> type:
    """``trainer_cls`` (TRL's GRPOTrainer) computing each micro-batch only over the columns some row uses.

    Every log-prob pass (the training forward + backward, the reference model's and the old policy's) goes through
    ``_get_per_token_logps_and_entropies`` in chunks of the micro-batch (grpo_trainer.py:1419-1500); here each chunk
    drops its all-pad leading prompt columns and trailing completion columns before the model sees it, and the
    outputs are padded back (zeros at positions the loss masks). The tokens a row attends to and their relative
    positions are unchanged (RoPE), so the loss and its gradient are the same up to rounding, at the cost of the
    real tokens: with ``per_device_batch: 1`` no padding is computed at all. The share of padded tokens actually
    computed is logged per step as ``padding/computed_share`` (1.0 = everything padded was computed).
    """
    import torch
    import torch.nn.functional as F

    class PaddingTrimmedTrainer(trainer_cls):
        def _get_per_token_logps_and_entropies(
            self,
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            *,
            batch_size=None,
            compute_entropy=False,
            compute_aux_loss=False,
            **multimodal,
        ):
            # TRL passes the first four by position and the rest by keyword (grpo_trainer.py:2646-2652, 3030-3036)
            if any(v is not None for v in multimodal.values()):
                return super()._get_per_token_logps_and_entropies(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size=batch_size,
                    compute_entropy=compute_entropy,
                    compute_aux_loss=compute_aux_loss,
                    **multimodal,
                )
            batch_size = batch_size or input_ids.size(0)
            logps, entropies, aux, kept = [], [], [], 0
            for start in range(0, input_ids.size(0), batch_size):
                ids, mask = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
                lead, trail = pad_columns(mask, logits_to_keep)
                end = ids.size(1) - trail
                lp, ent, aux_loss = super()._get_per_token_logps_and_entropies(
                    model,
                    ids[:, lead:end],
                    mask[:, lead:end],
                    logits_to_keep - trail,
                    batch_size=ids.size(0),
                    compute_entropy=compute_entropy,
                    compute_aux_loss=compute_aux_loss,
                )
                kept += ids.size(0) * (end - lead)
                logps.append(F.pad(lp, (0, trail)))
                if ent is not None:
                    entropies.append(F.pad(ent, (0, trail)))
                if aux_loss is not None:
                    aux.append(aux_loss)
            if model.training:
                self._metrics["train"]["padding/computed_share"].append(kept / input_ids.numel())
            return (
                torch.cat(logps),
                torch.cat(entropies) if compute_entropy else None,
                torch.stack(aux).mean() if aux else None,
            )

    return PaddingTrimmedTrainer


def metrics_callback(path: Path, monitor: HackMonitor | None = None):
    """A TrainerCallback appending every logged step's metrics to a JSONL file (flushed per line).

    With a ``monitor``, each training step's row also gets ``reward/suspect_frac`` (the share of rewarded QA answers
    that look gamed; null, NaN in MLflow, when none was rewarded) and ``reward/qa_rewarded`` (how many were), which
    also go to the active MLflow run. The monitor is emptied at every log, so completions
    scored for the validation slice (logged separately, as ``eval_*``) never count towards a training step.
    """
    from transformers import TrainerCallback

    class JsonlMetrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            # every rank scores its own completions; the step's share is over all of them
            counts = sum_over_ranks(monitor.pop_counts()) if monitor is not None else None
            if not logs or ("loss" not in logs and "reward" not in logs):
                return
            row = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, int | float)}}
            if counts is not None:
                extra = monitor_metrics(counts)
                row.update(extra)
                log_mlflow_metrics({k: math.nan if v is None else v for k, v in extra.items()}, state.global_step)
            if state.is_world_process_zero:
                with path.open("a") as fh:
                    fh.write(json.dumps(row, sort_keys=True) + "\n")

    return JsonlMetrics()


def joined_world() -> int:
    """Ranks of the process group this process joined (1 when it joined none)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_over_ranks(counts: tuple[int, ...]) -> tuple[int, ...]:
    """The hack monitor's counts summed over every rank's completions of the step (one all-reduce)."""
    if joined_world() > 1:
        import torch
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        t = torch.tensor(list(counts), dtype=torch.float64, device=device)
        dist.all_reduce(t)
        counts = tuple(int(x) for x in t.tolist())
    return tuple(counts)


def init_ranks(timeout_minutes: float) -> bool:
    """Join the launch's process group (several ranks only) and say whether this is the main process.

    DeepSpeed's ``init_distributed`` picks the backend for the device (NCCL on GPUs, gloo on CPU) and is what the
    trainer would call; doing it first lets the ranks synchronise on the stage's folders before the trainer exists.
    It takes the timeout here or never: the group exists before the trainer, so transformers' ``ddp_timeout`` is not
    applied (accelerate/state.py:215 skips an initialised group), and DeepSpeed's default is 10 minutes
    (deepspeed/constants.py:19, ``DEEPSPEED_TIMEOUT``), less than one rank may lag another while generating 256
    completions of up to 4K tokens.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import deepspeed
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        deepspeed.init_distributed(timeout=timedelta(minutes=timeout_minutes))
    return int(os.environ.get("RANK", "0")) == 0


def check_world(expected: int) -> int:
    """The world this process joined; it must be ``train.gpus x train.nodes`` ranks (what the accumulation and the
    ZeRO-3 shards were sized for), or the stage stops before it trains."""
    actual = joined_world()
    if actual != expected:
        raise RuntimeError(
            f"this GRPO stage joined a world of {actual} rank(s), but config keys 'train.gpus' x 'train.nodes' ask "
            f"for {expected}: check the launcher (accelerate's num_processes/num_machines, "
            f"deepspeed_multinode_launcher in workflow/accelerate/zero3.yaml) and the SLURM job's nodes and GPUs"
        )
    return actual


def time_save_callback(minutes: float | None):
    """A TrainerCallback that also saves a checkpoint when ``minutes`` have passed since the last save.

    A 7B stage step takes minutes to an hour (long rollouts), so a fixed ``save_steps`` either loses a day to a
    job's time limit or fills the disk with ~120 GB checkpoints; time bounds what a kill can lose. The decision is
    made on the main process and shared, so every rank saves at the same step (ZeRO-3 saves are collective).
    """
    from transformers import TrainerCallback

    class SaveEvery(TrainerCallback):
        def __init__(self) -> None:
            self.last = time.monotonic()

        def on_save(self, args, state, control, **kwargs):
            self.last = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if minutes is None or control.should_save:
                return control
            due = time.monotonic() - self.last >= minutes * 60
            if joined_world() > 1:
                import torch.distributed as dist

                flag = [due]
                dist.broadcast_object_list(flag, src=0)
                due = flag[0]
            if due:
                control.should_save = True
            return control

    return SaveEvery()


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if joined_world() > 1:
        import torch.distributed as dist

        dist.barrier()


def score_completion_tokens_only() -> bool:
    """Make TRL score only completion positions on the CPU too (a speed fix, not a change of the loss).

    TRL 1.16's fused LM-head log-prob compacts to the labelled (completion) positions only on Triton devices; on
    the CPU it projects *every* prompt position onto the vocabulary and masks afterwards. With 4K-token prompts and
    Qwen2.5's 151,936-token vocabulary that dominates a step (measured on 2 cores, 8 sequences of 4K tokens:
    267 s a step before, 21 s after). The compaction decision is a module-level name in ``trl.trainer.utils``;
    the kernels keep their own (torch) code path. Returns whether the patch is in place.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None or getattr(original, "_loongrl_patched", False):
        return original is not None

    def use_compact(device):
        return device.type == "cpu" or original(device)

    use_compact._loongrl_patched = True
    trl_utils._use_triton = use_compact
    return True


def load_mixture(path: Path, tokenizer=None):
    """The mixture parquet as a datasets.Dataset with the columns the reward function needs.

    Prompts stay conversational (TRL applies the chat template) unless a row's prompt ends in a started assistant
    turn (KeyChain over books' answer prefix). TRL renders every conversational prompt with
    ``add_generation_prompt=True`` (trl/trainer/grpo_trainer.py:1684-1745, TRL 1.16): the prefilled turn is closed
    and a new assistant turn opened (tests/test_train.py shows it), and asking for ``continue_final_message``
    through ``chat_template_kwargs`` raises beside it (transformers/tokenization_utils_base.py:3163-3166), so a
    prefill cannot go in as a conversation. A text prompt is tokenised as given
    (``processing_class(text=prompts)``, grpo_trainer.py:1758). TRL picks the format from a batch's first prompt
    (grpo_trainer.py:1686), so one prefilled row turns every prompt of the file into its chat text
    (``prompts.chat_text``: the assistant header, or the open prefilled turn), tokens unchanged for the rest; the
    rewards read text completions as they read conversational ones (``rewards.completion_text``)."""
    import datasets

    from loongrl.prompts import chat_text, prefilled

    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    keep = ["prompt", "answers", "data_source", "id"]
    ds = ds.remove_columns([c for c in ds.column_names if c not in keep])
    if any(prefilled(p) for p in ds["prompt"]):
        if tokenizer is None:
            raise ValueError(f"{path}: prefilled prompts need the tokenizer to be rendered as text")
        ds = ds.map(lambda row: {"prompt": chat_text(tokenizer, row["prompt"])})
    return ds


def check_host_memory(model_path: Path, data_path: Path, train: dict[str, Any], *, world_size: int = 1) -> None:
    """Refuse, at start-up, a CPU stage whose step cannot fit in this host's RAM (``memory.cpu_check`` at the
    longest prompt of its data; every rank of a multi-process CPU run lives on this host), instead of being ended
    by the OOM killer minutes later with nothing in the log that names the setting to change."""
    from loongrl.train.memory import ModelShape, cpu_check, host_memory_gib, mixture_stats

    shape = ModelShape.from_config(json.loads((Path(model_path) / "config.json").read_text()))
    longest = int(mixture_stats(Path(data_path))["max_prompt_tokens"])
    host = host_memory_gib() / max(1, world_size)
    dtype = model_init_kwargs(train, gpu=False, deepspeed=world_size > 1)["dtype"]  # what the stage will load
    dtype_bytes = {"float32": 4, "bfloat16": 2}[dtype]
    est, problems = cpu_check(shape, train, prompt_tokens=longest, host_gib=host, dtype_bytes=dtype_bytes)
    if problems:
        raise RuntimeError(f"{data_path}: " + "; ".join(problems))
    log.info("host memory check: ~%.1f GiB of %.1f GiB a process at %d prompt tokens", est["total"], host, longest)


def run_stage(
    *,
    model_path: Path,
    data_path: Path,
    train: dict[str, Any],
    steps: int,
    work_dir: Path,
    output_dir: Path,
    metrics_path: Path,
    summary_path: Path,
    reward_funcs=None,
    gpu: bool = False,
    world_size: int = 1,
    seed: int = 42,
    tracking: dict[str, Any] | None = None,
    eval_path: Path | None = None,
) -> dict[str, Any]:
    """Train one GRPO stage, resuming from ``work_dir`` when a checkpoint is there.

    With ``eval_path`` (the validation slice) the stage is evaluated at every checkpoint with the same rewards,
    and the checkpoint with the highest mean validation reward becomes the stage's model: TRL/transformers'
    ``load_best_model_at_end``, which also keeps that checkpoint from being rotated away.

    ``tracking`` (``{uri, experiment, run_name, tags, artifacts}``) logs the stage as one MLflow run: params and
    per-step metrics through transformers' MLflow callback, plus tags and artifact files.
    """
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    if not gpu and not score_completion_tokens_only():
        log.warning("TRL internals changed: CPU steps will score every prompt position (slow for long prompts)")
    if not gpu:
        check_host_memory(model_path, data_path, train, world_size=world_size)
    extra = [str(eval_path), world_size]
    fingerprint = run_fingerprint(
        model_path=model_path, data_path=data_path, train=train, steps=steps, seed=seed, extra=extra
    )
    # Under `accelerate launch` every rank runs this; the work folder, the metrics log and the MLflow run are the
    # main process's, and the others wait for it.
    main_process = init_ranks(train["dist_timeout_minutes"])
    world = check_world(world_size)
    if main_process:
        prepare_work_dir(work_dir, fingerprint)
    barrier()
    resume = last_checkpoint(work_dir, world)
    if main_process:
        if resume is not None:
            step = int(CHECKPOINT.match(resume.name).group(1))
            truncate_metrics(metrics_path, step)
            log.info("resuming from %s (step %d)", resume, step)
        elif metrics_path.exists():
            metrics_path.unlink()
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
    run = start_tracking(tracking, resume is not None) if tracking and main_process else None
    args = grpo_config(
        train,
        steps,
        work_dir,
        world_size=world_size,
        gpu=gpu,
        seed=seed,
        report_to="mlflow" if run else "none",
        select_best=eval_path is not None,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    tmp = output_dir.with_name(output_dir.name + ".partial")
    if main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    if resume is not None and int(CHECKPOINT.match(resume.name).group(1)) >= steps:
        # Killed after its last checkpoint: resuming would train one step past max_steps (transformers checks the
        # limit only after a step), so the stage's model is the checkpoint's own weights (or its best one's).
        from transformers import TrainerState

        state = TrainerState.load_from_json(str(resume / "trainer_state.json"))
        train_loss, grad_dtypes = None, None
        if main_process:
            copy_model_files(Path(state.best_model_checkpoint or resume), tmp)
    else:
        monitor = None
        if reward_funcs is None:
            rules = RewardRules.from_config(train["reward"])
            monitor = HackMonitor(rules)
            reward_funcs = make_reward_fns(rules, monitor)
        trainer = padding_trimmed(epoch_ordered(GRPOTrainer))(
            model=str(model_path),
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=load_mixture(data_path, tokenizer),
            eval_dataset=load_mixture(eval_path, tokenizer) if eval_path else None,
            processing_class=tokenizer,
            callbacks=[metrics_callback(metrics_path, monitor), time_save_callback(train["save_minutes"])],
        )
        set_gradient_dtypes(trainer, train)
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        state = trainer.state
        grad_dtypes = gradient_dtypes(trainer)
        train_loss = result.training_loss if not math.isnan(result.training_loss) else None
        # Every rank takes part in saving (ZeRO-3 gathers the sharded weights), but only the main process touches
        # the folders: a rank that renamed the result while another still wrote into it would break the save.
        barrier()
        trainer.save_model(str(tmp))
    barrier()
    if not main_process:
        return {}
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp.rename(output_dir)
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    run_id = finish_tracking(tracking, metrics_path) if run else None
    summary = {
        "mlflow_run_id": run_id,
        "steps": state.global_step,
        "resumed_from": str(resume) if resume else None,
        "train_loss": train_loss,
        "reward_first": rows[0].get("reward") if rows else None,
        "reward_last": rows[-1].get("reward") if rows else None,
        "best_checkpoint": state.best_model_checkpoint,
        "best_validation_reward": state.best_metric,
        "validation_rewards": {h["step"]: h["eval_reward"] for h in state.log_history if "eval_reward" in h},
        "world_size": world,
        # what decides the loss beyond the paper's values (TRL defaults we override; see grpo_kwargs)
        "vllm_importance_sampling_correction": args.vllm_importance_sampling_correction,
        "use_bias_correction_kl": args.use_bias_correction_kl,
        "dist_timeout_minutes": train["dist_timeout_minutes"],
        # ZeRO-3's gradient dtypes as the engine reports them (None without DeepSpeed)
        "gradient_dtypes": grad_dtypes,
        "peak_gpu_reserved_gib": peak_gpu_reserved_gib(),
    }
    write_json(summary, summary_path)
    return summary


def peak_gpu_reserved_gib() -> float | None:
    """This process's peak of PyTorch-reserved GPU memory (vLLM colocated in it included), or None on the CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_reserved() / 2**30, 2)


MODEL_FILES = ("config.json", "generation_config.json", "model*.safetensors", "model.safetensors.index.json")


def copy_model_files(checkpoint: Path, dest: Path) -> None:
    """The HF model files of a checkpoint folder (not its optimizer, RNG or DeepSpeed shards)."""
    files = sorted({p for pat in MODEL_FILES for p in checkpoint.glob(pat)})
    if not any(p.suffix == ".safetensors" for p in files):
        raise FileNotFoundError(f"{checkpoint} holds no model weights (*.safetensors)")
    dest.mkdir(parents=True)
    for p in files:
        shutil.copy2(p, dest / p.name)


def stage_steps(value: str) -> int | str:
    """``--steps``: a number of optimizer steps, or ``epoch`` (one pass over the stage's data, ``epoch_steps``)."""
    if value == "epoch":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number of steps nor 'epoch'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: at least one step")
    return n


def epoch_steps(data_path: Path, prompts_per_step: int) -> int:
    """The optimizer steps of one epoch: TRL's ``RepeatSampler`` yields only full batches of ``prompts_per_step``
    prompts (trl/trainer/utils.py:941-943), so an epoch is ``rows // prompts_per_step`` steps and the remainder is
    left for the next one. The paper's warm-up is "1 epoch" [P §3.2.2]."""
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(data_path).metadata.num_rows
    if rows < prompts_per_step:
        raise StageError(
            f"{data_path}: {rows} rows, fewer than train.prompts_per_step = {prompts_per_step}: one epoch would "
            "train 0 steps (config key 'train.stages.<stage>.steps': give a number of steps)"
        )
    return rows // prompts_per_step


def parser() -> argparse.ArgumentParser:
    """The job's command line (the engine check parses a planned job's arguments with it)."""
    ap = argparse.ArgumentParser(prog="python -m loongrl.train.grpo", description=__doc__)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--params", required=True, help="JSON of the config's train section")
    ap.add_argument("--steps", type=stage_steps, required=True, help="optimizer steps, or 'epoch'")
    ap.add_argument("--work-dir", type=Path, required=True, help="checkpoints (kept across failed runs)")
    ap.add_argument("--output", type=Path, required=True, help="final HF model folder")
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--summary", type=Path, required=True)
    ap.add_argument("--gpus", type=int, default=0, help="GPUs of the whole job (0: CPU)")
    ap.add_argument("--world", type=int, default=None, help="ranks the launch must have (default: max(1, gpus))")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--mlflow-uri", default=None, help="tracking URI (MLFLOW_TRACKING_URI overrides)")
    ap.add_argument("--experiment", default="loongrl")
    ap.add_argument("--run-name", default=None)
    ap.add_argument("--tag", action="append", default=[], help="KEY=VALUE run tags")
    ap.add_argument("--eval-data", type=Path, default=None, help="validation slice: keep the best checkpoint")
    ap.add_argument("--artifact", action="append", default=[], type=Path, help="files logged with the run")
    return ap


def main(argv: list[str] | None = None) -> None:
    import os

    args = parser().parse_args(argv)
    setup_logging()

    uri = os.environ.get("MLFLOW_TRACKING_URI") or args.mlflow_uri
    tracking = None
    if uri:
        tags = {"git_commit": git_commit(), "config_hash": os.environ.get("LOONGRL_CONFIG_HASH", "unknown")}
        tracking = {
            "uri": uri,
            "experiment": args.experiment,
            "run_name": args.run_name or args.output.name,
            "tags": {**tags, **dict(t.split("=", 1) for t in args.tag)},
            "artifacts": args.artifact,
        }
    train = json.loads(args.params)
    steps = epoch_steps(args.data, train["prompts_per_step"]) if args.steps == "epoch" else args.steps
    if args.steps == "epoch":
        log.info("one epoch of %s: %d steps of %d prompts", args.data, steps, train["prompts_per_step"])
    summary = run_stage(
        model_path=args.model,
        data_path=args.data,
        train=train,
        steps=steps,
        work_dir=args.work_dir,
        output_dir=args.output,
        metrics_path=args.metrics,
        summary_path=args.summary,
        gpu=pick_device(args.gpus) == "cuda",
        world_size=args.world or max(1, args.gpus),
        seed=args.seed,
        tracking=tracking,
        eval_path=args.eval_data,
    )
    log.info("stage done: %s", summary)


if __name__ == "__main__":
    run(main)
