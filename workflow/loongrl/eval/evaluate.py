"""Run one cell of the eval matrix (a model on one task file) and score every completion.

Generation goes through the shared inference backend (vLLM on GPU, transformers on CPU) with the paper's
reasoning decoding [spec §4]: 8 samples at T=0.6 / top-p 0.95 and up to 10K new tokens, pass@1 averaged over
samples; ``greedy`` gives the T=0 setting for non-reasoning baselines. Outputs: one parquet row per
(task row, sample) with the completion, extracted answer, scores and truncation flags, and a JSON summary with
per-task means and the share of completions that hit the token cap (a capped chain of thought has no answer).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from loongrl.books import load_books, strip_gutenberg
from loongrl.cli import run, setup_logging
from loongrl.eval.kinds import KINDS, ModelKind, read_completion
from loongrl.eval.metrics import METRICS, score_reading
from loongrl.eval.rows import EVAL_SCHEMA
from loongrl.inference import (
    Completion,
    InferenceBackend,
    SamplingParams,
    make_backend,
    model_rope_parameters,
    pick_device,
)
from loongrl.io import DataError, check_qa_rows, read_parquet, write_json, write_parquet

log = logging.getLogger(__name__)

SCORE = pa.struct([("name", pa.string()), ("value", pa.float64())])
SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("benchmark", pa.string()),
        ("task", pa.string()),
        ("length", pa.int64()),
        ("sample", pa.int32()),
        ("prompt_tokens", pa.int64()),
        ("input_truncated", pa.bool_()),
        ("completion", pa.string()),
        ("completion_tokens", pa.int64()),
        ("hit_cap", pa.bool_()),
        ("no_think", pa.bool_()),  # reasoning kind: no </think>, so no answer
        ("extracted", pa.string()),
        ("score", pa.float64()),  # the benchmark's primary metric for this sample
        ("scores", pa.list_(SCORE)),  # every metric computed for it
        ("meta", pa.string()),
    ]
)
# Length buckets of Table 3 (NarrativeQA by input length), in prompt tokens.
BUCKETS = ((0, 16384, "0-16K"), (16384, 32768, "16-32K"), (32768, 65536, "32-64K"), (65536, 1 << 40, "64K+"))


def punkt_dir(books: list[Path], out: Path) -> Path:
    """An NLTK ``punkt_tab/english`` model trained on the given books, for IFEval's sentence counter.

    lm-evaluation-harness's IFEval checkers call NLTK's Punkt, whose parameters NLTK downloads from GitHub at import;
    that is unreachable offline and version-dependent, so the model is trained here (Punkt is unsupervised) on
    public-domain English books and written in NLTK's tab format. Only ``length_constraints:number_sentences``
    uses it.
    """
    from nltk.tabdata import TabEncoder
    from nltk.tokenize.punkt import PunktTrainer

    target = out / "tokenizers/punkt_tab/english"
    if (target / "ortho_context.tab").exists():
        return out
    trainer = PunktTrainer()
    for _, text in sorted(load_books(books).items()):
        trainer.train(strip_gutenberg(text), finalize=False)
    trainer.finalize_training()
    params, enc = trainer.get_params(), TabEncoder()
    target.mkdir(parents=True, exist_ok=True)
    files = {
        "collocations.tab": enc.tups2tab(params.collocations),
        "sent_starters.txt": enc.set2txt(params.sent_starters),
        "abbrev_types.txt": enc.set2txt(params.abbrev_types),
        "ortho_context.tab": enc.ivdict2tab(params.ortho_context),
    }
    for name, text in files.items():  # ortho_context last: its presence marks a finished model
        (target / name).write_text(text, encoding="utf-8", newline="")
    return out


def ifeval_scorer(books: list[Path], work: Path):
    """lm-evaluation-harness's IFEval ``process_results`` with a Punkt model trained here on NLTK's path."""
    import nltk

    nltk_data = punkt_dir(books, work)
    nltk.data.path.insert(0, str(nltk_data))
    os.environ["NLTK_DATA"] = str(nltk_data)
    from lm_eval.tasks.ifeval.utils import process_results

    return process_results


FOLLOWUP_MARK = "\n\n[answer call]\n"


def followups(
    rows: list[dict[str, Any]],
    completions: list[list[Completion]],
    backend: InferenceBackend,
    params: SamplingParams,
    *,
    max_new_tokens: int,
) -> list[list[Completion | None]]:
    """The second call of a two-pass (CoT) prompt: for every completion of a row whose ``meta.followup`` template
    has ``$COT$``, one more generation that sees that chain of thought (LongBench v2's 0-shot CoT setting).

    Rows without a follow-up get None per completion. The follow-up is the user message alone, as ``pred.py``
    sends it (no system prompt), at the sampling temperature, with ``max_new_tokens`` new tokens (the cell's
    ``followup_max_new_tokens``).
    """
    prompts, where = [], []
    for i, (row, comps) in enumerate(zip(rows, completions, strict=True)):
        template = json.loads(row["meta"]).get("followup")
        if template:
            for k, c in enumerate(comps):
                prompts.append([{"role": "user", "content": template.replace("$COT$", c.text.strip())}])
                where.append((i, k))
    out: list[list[Completion | None]] = [[None] * len(c) for c in completions]
    if prompts:
        second = dataclasses.replace(params, n=1, max_new_tokens=max_new_tokens)
        for (i, k), comps in zip(where, backend.generate_detailed(prompts, second), strict=True):
            out[i][k] = comps[0]
    return out


def generate_rows(
    rows: list[dict[str, Any]], backend: InferenceBackend, params: SamplingParams, caps: list[int] | None = None
) -> list[list[Completion]]:
    """Completions of every row, in row order, each with its own generation cap (``row_caps``, or the cell's plan
    when the window clipped them), so rows are generated in one call per distinct cap."""
    caps = row_caps(rows, params.max_new_tokens) if caps is None else caps
    out: list[list[Completion] | None] = [None] * len(rows)
    for cap in sorted(set(caps)):
        idx = [i for i, c in enumerate(caps) if c == cap]
        p = dataclasses.replace(params, max_new_tokens=cap)
        for i, comps in zip(idx, backend.generate_detailed([rows[i]["prompt"] for i in idx], p), strict=True):
            out[i] = comps
    return out  # type: ignore[return-value]


def evaluate(
    rows: list[dict[str, Any]],
    backend: InferenceBackend,
    params: SamplingParams,
    *,
    kind: ModelKind = KINDS["reasoning"],
    ifeval=None,
    followup_max_new_tokens: int = 0,
    caps: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Generate and score every row; completions are read as the model's ``kind`` reads them (reasoning: the
    answer after ``</think>``, none without it)."""
    completions = generate_rows(rows, backend, params, caps)
    answers = followups(rows, completions, backend, params, max_new_tokens=followup_max_new_tokens)
    out = []
    for row, comps, answer_calls in zip(rows, completions, answers, strict=True):
        for k, (c, a) in enumerate(zip(comps, answer_calls, strict=True)):
            reading = read_completion(c.text if a is None else a.text, kind)
            pred, scores = score_reading(row, reading, ifeval)
            out.append(
                {
                    "id": row["id"],
                    "benchmark": row["benchmark"],
                    "task": row["task"],
                    "length": row["length"],
                    "sample": k,
                    "prompt_tokens": row["prompt_tokens"],
                    "input_truncated": row["input_truncated"],
                    "completion": c.text if a is None else c.text + FOLLOWUP_MARK + a.text,
                    "completion_tokens": c.tokens + (a.tokens if a else 0),
                    "hit_cap": c.hit_cap,
                    "no_think": reading.no_think,
                    "extracted": pred,
                    "score": scores[METRICS[row["metric"]].primary],
                    "scores": [{"name": n, "value": v} for n, v in sorted(scores.items())],
                    "meta": row["meta"],
                }
            )
    return out


PAST_NATIVE = ("yarn", "extend", "clip")


@dataclasses.dataclass(frozen=True)
class CellPlan:
    """The engine window of one eval cell and what it did to fit the rows' prompts and generation caps.

    ``position_limit`` is what the engine's rotary embedding covers: the model's ``max_position_embeddings``, or
    factor x native under YaRN. ``window`` is the engine's ``max_model_len`` (the longest prompt + its cap, never
    less); ``extend`` says it passes ``position_limit`` through vLLM's long-length override. ``caps`` are the rows'
    generation caps (the cell's, lowered by a row's own ``meta.max_new_tokens`` and, under ``clip``, by the room
    left in the window); ``clipped`` counts the rows whose cap the window lowered.
    """

    window: int
    position_limit: int
    yarn: dict[str, Any] | None
    caps: list[int]
    extend: bool
    clipped: int
    past_native: bool  # some prompt + generation passes the model's native positions


def plan_cell(
    prompts: list[int],
    *,
    labels: list[int],
    caps: list[int],
    native: int,
    yarn: dict[str, Any] | None,
    past_native: str,
    source: str,
) -> CellPlan:
    """Size a cell's engine window from its rows (prompt tokens, length labels, generation caps).

    YaRN [P §4.1; Qwen2.5's model card]: factor ``yarn.factor`` over ``yarn.native_context`` for cells labelled
    ``yarn.min_length`` or longer (the paper's 64K and 128K cells). A cell whose prompt + generation passes the
    model's ``native`` positions although its label is shorter (a 32K RULER cell with 8,192 reasoning tokens, an
    unlabelled LongBench cell) is the paper's blind spot (⚠ not stated): ``past_native`` decides —
    ``yarn`` runs it under YaRN as the model card documents for input past 32K; ``extend`` keeps native RoPE and
    passes the limit with vLLM's long-length override (positions past training, unscaled); ``clip`` ends generation
    at the native window (what a native-window engine does), and a row left no room is an error.
    Past factor x native (a 128K prompt + 8K generation) ``yarn`` and ``extend`` take the override, ``clip`` clips.
    """
    if past_native not in PAST_NATIVE:
        raise ValueError(f"eval.past_native: {past_native!r} (expected one of {', '.join(PAST_NATIVE)})")
    if not prompts:
        raise ValueError(f"{source}: no task rows")
    needed = max(p + c for p, c in zip(prompts, caps, strict=True))
    over = needed > native
    use_yarn = bool(yarn) and (any(n >= yarn["min_length"] for n in labels if n) or (over and past_native == "yarn"))
    if over and past_native == "yarn" and not yarn:
        raise ValueError(
            f"{source}: prompt + generation = {needed} positions, past the model's {native}, and eval.past_native is "
            "'yarn' but eval.yarn is null (set eval.yarn, or eval.past_native: extend or clip)"
        )
    rope = {"factor": yarn["factor"], "native_context": yarn["native_context"]} if use_yarn else None
    limit = int(yarn["factor"] * yarn["native_context"]) if use_yarn else native
    out = list(caps)
    if past_native == "clip":
        for i, (p, c) in enumerate(zip(prompts, caps, strict=True)):
            if p >= limit:
                raise ValueError(
                    f"{source}: row {i} has a {p}-token prompt, no room to generate within {limit} positions "
                    "(eval.past_native: clip); a shorter cell, eval.niah.reserve, or eval.past_native: yarn"
                )
            out[i] = min(c, limit - p)
    window = max(p + c for p, c in zip(prompts, out, strict=True))
    return CellPlan(
        window=window,
        position_limit=limit,
        yarn=rope,
        caps=out,
        extend=window > limit,
        clipped=sum(a != b for a, b in zip(out, caps, strict=True)),
        past_native=over,
    )


def check_task_rows(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Before any generation: a non-empty task file, unique ids, and a metric the scorer knows on every row (an
    unknown one would otherwise surface only after hours of generation)."""
    check_qa_rows(rows, path, answers=False)
    for i, r in enumerate(rows):
        if r["metric"] not in METRICS:
            raise DataError(path, i, "metric", f"unknown metric {r['metric']!r} (known: {', '.join(sorted(METRICS))})")


def row_caps(rows: list[dict[str, Any]], max_new_tokens: int) -> list[int]:
    """Each row's generation cap: the cell's, lowered by the row's own ``meta.max_new_tokens`` (RULER's per-task
    caps for the instruct kind)."""
    return [min(max_new_tokens, json.loads(r["meta"]).get("max_new_tokens") or max_new_tokens) for r in rows]


def native_positions(model_path: str | Path) -> int:
    """The model's ``max_position_embeddings`` (its config.json), the window vLLM derives its limit from."""
    cfg = json.loads((Path(model_path) / "config.json").read_text())
    if not cfg.get("max_position_embeddings"):
        raise ValueError(f"{model_path}/config.json: no max_position_embeddings")
    return int(cfg["max_position_embeddings"])


def engine_request(args: argparse.Namespace, plan: CellPlan) -> dict[str, Any]:
    """The engine settings of an evaluate job (``make_backend`` keywords but the device) for its cell's plan.
    ``loongrl.enginecheck`` validates the same dict."""
    p = json.loads(args.params)
    rope = model_rope_parameters(args.model, **plan.yarn) if plan.yarn else None
    return {
        "seed": args.seed,
        "tensor_parallel_size": max(1, args.gpus),
        "gpu_memory_utilization": p["gpu_memory_utilization"],
        "enforce_eager": p["enforce_eager"],
        "max_model_len": plan.window,
        "rope_parameters": rope,
        "batch_size": p["batch_size"],
    }


def _stats(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over samples (= pass@1 averaged over the n samples of every row) plus truncation accounting."""
    names = sorted({s["name"] for x in samples for s in x["scores"]})
    return {
        "rows": len({x["id"] for x in samples}),
        "samples": len(samples),
        "score": statistics.fmean(x["score"] for x in samples),
        "metrics": {
            n: statistics.fmean(s["value"] for x in samples for s in x["scores"] if s["name"] == n) for n in names
        },
        "hit_cap_share": statistics.fmean(float(x["hit_cap"]) for x in samples),
        # reasoning kind: completions that never closed their reasoning (scored 0; most also hit the cap)
        "no_think_share": statistics.fmean(float(x["no_think"]) for x in samples),
        "input_truncated_share": statistics.fmean(float(x["input_truncated"]) for x in samples),
        "completion_tokens_mean": statistics.fmean(x["completion_tokens"] for x in samples),
        "prompt_tokens_mean": statistics.fmean(x["prompt_tokens"] for x in samples),
    }


def summarize(samples: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """Per task, per (task, length), NIAH per (length, depth), LongBench per input-length bucket, and per any
    grouping a task row names in ``meta.groups`` (LongBench v2: difficulty, length bucket)."""
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for x in samples:
        groups["task"][x["task"]].append(x)
        for kind, value in json.loads(x["meta"]).get("groups", {}).items():
            groups[kind][value].append(x)
        if x["length"]:
            groups["task_length"][f"{x['task']}@{x['length']}"].append(x)
        if x["benchmark"] == "niah":
            groups["length_depth"][f"{x['length']}@{json.loads(x['meta'])['depth']:g}"].append(x)
        if x["benchmark"] == "longbench":
            label = next(b for lo, hi, b in BUCKETS if lo <= x["prompt_tokens"] < hi)
            groups["task_bucket"][f"{x['task']}@{label}"].append(x)
    out = {**info, "overall": _stats(samples) if samples else None}
    # each row's mean score over its samples: the report's bootstrap intervals resample rows (examples), and the
    # gain of a trained model over the base pairs the same rows
    per_row: dict[str, list[float]] = defaultdict(list)
    for x in samples:
        per_row[x["id"]].append(x["score"])
    out["row_scores"] = {k: statistics.fmean(v) for k, v in sorted(per_row.items())}
    for kind, parts in sorted(groups.items()):
        out[f"by_{kind}"] = {k: _stats(v) for k, v in sorted(parts.items())}
    return out


def parser() -> argparse.ArgumentParser:
    """The job's command line (the engine check parses a planned job's arguments with it)."""
    ap = argparse.ArgumentParser(prog="python -m loongrl.eval.evaluate", description=__doc__)
    ap.add_argument("--model", type=Path, required=True, help="HF model folder")
    ap.add_argument("--model-name", required=True, help="label in tables (base, warmup, stage1, ...)")
    ap.add_argument("--tasks", type=Path, required=True, help="task parquet from loongrl.eval.tasks")
    ap.add_argument("--params", required=True, help="JSON of the run settings (backend, batch size, YaRN)")
    ap.add_argument("--decoding", required=True, help="JSON of the cell's decoding (eval.registry: Benchmark.decoding)")
    ap.add_argument("--kind", choices=list(KINDS), default="reasoning", help="how the model is read (eval.kinds)")
    ap.add_argument("--books", type=Path, nargs="*", default=[], help="book folders (IFEval's Punkt model)")
    ap.add_argument("--gpus", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--samples", type=Path, required=True)
    ap.add_argument("--summary", type=Path, required=True)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    setup_logging()
    p = json.loads(args.params)
    dec = json.loads(args.decoding)
    rows = read_parquet(args.tasks, EVAL_SCHEMA)
    check_task_rows(rows, args.tasks)
    params = SamplingParams(
        n=1 if dec["greedy"] else dec["n"],
        temperature=0.0 if dec["greedy"] else dec["temperature"],
        top_p=dec["top_p"],
        max_new_tokens=dec["max_new_tokens"],
        seed=args.seed,
    )
    plan = plan_cell(
        [r["prompt_tokens"] for r in rows],
        labels=[r["length"] for r in rows],
        caps=row_caps(rows, params.max_new_tokens),
        native=native_positions(args.model),
        yarn=p["yarn"],
        past_native=p["past_native"],
        source=str(args.tasks),
    )
    if plan.extend:
        # vLLM refuses a max_model_len past the positions its rope covers unless told (vllm/envs.py
        # VLLM_ALLOW_LONG_MAX_MODEL_LEN, read by ModelConfig's max-length check); only when the plan says so
        log.warning(
            "window %d passes the %d positions the rope covers (eval.past_native)", plan.window, plan.position_limit
        )
        os.environ["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] = "1"
    if plan.clipped:
        log.warning(
            "%d rows' generation caps lowered to fit %d positions (eval.past_native: clip)",
            plan.clipped,
            plan.position_limit,
        )
    backend = make_backend(p["backend"], args.model, device=pick_device(args.gpus), **engine_request(args, plan))
    with tempfile.TemporaryDirectory(prefix="loongrl-nltk-") as work:
        ifeval = ifeval_scorer(args.books, Path(work)) if any(r["metric"] == "ifeval" for r in rows) else None
        samples = evaluate(
            rows,
            backend,
            params,
            kind=KINDS[args.kind],
            ifeval=ifeval,
            followup_max_new_tokens=dec.get("followup_max_new_tokens", 0),
            caps=plan.caps,
        )
    write_parquet(samples, args.samples, SAMPLE_SCHEMA)
    info = {
        "model": args.model_name,
        "model_path": str(args.model),
        "kind": args.kind,
        "tasks_file": str(args.tasks),
        "decoding": {
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
        },
        "backend": p["backend"],
        # the rope parameters the engine reports after it started (rope_theta included), None without YaRN
        "yarn": getattr(backend, "rope", None),
        # how the cell fit the engine (plan_cell): the report names cells that ran past native positions
        "window": {
            "max_model_len": plan.window,
            "position_limit": plan.position_limit,
            "past_native": plan.past_native,
            "policy": p["past_native"],
            "extended_past_limit": max(0, plan.window - plan.position_limit),
            "rows_generation_clipped": plan.clipped,
        },
    }
    summary = summarize(samples, info)
    write_json(summary, args.summary)
    log.info(
        "%s on %s: score %.4f over %d samples", args.model_name, args.tasks, summary["overall"]["score"], len(samples)
    )


if __name__ == "__main__":
    run(main)
