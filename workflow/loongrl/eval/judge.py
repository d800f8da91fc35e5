"""The LLM judge of LongBench v1 answers: the third part of the authors' rule, and QwenLong-L1's max(sub-EM, judge).

The authors count a LongBench v1 answer correct when the boxed two-way match against any gold, a direct exact match
**or** an LLM judge says so; their judge key is ``llm_judge_v3_l1`` (DeepSeek-V3) [KC
``difficulty_analysis/narqa_context.ipynb`` ~109, ~170-172]. The prompt they used is not public; the one here is
adapted from QwenLong-L1's answer-equivalence prompt [QL ``eval/hotpotqa_verify.py`` ``GENERAL_ORM_PROMPT``,
``ORM_USER_TEMPLATE``]: the question, the model's answer and the first gold answer, a short explanation, then a
verdict ``[[YES]]`` or ``[[NO]]``, at temperature 0 (QL ``call_reward_model``). Differences, stated: the verdict is
the last bracketed one (QL counts any "YES" in the reply, which an explanation can contain), and a reply without a
verdict is NO and counted (``unparsed``).

The judge is either a model run by our own inference backend (vLLM on the cluster, transformers on CPU; the same
``make_backend`` as evaluation) or any OpenAI-compatible endpoint (``eval.judge.url``; key from the environment
variable ``eval.judge.api_key_env``). Verdicts are cached one file per (judge, prompt version, question, answer,
gold) under ``eval.judge.cache_dir``, written atomically, so a rerun, another cell or another model with the same
answer costs nothing and concurrent jobs never share a file.

The stage reads an evaluate job's samples, adds ``judge``, ``authors`` (boxed OR direct OR judge) and
``qwenlong_l1`` (max(sub-EM, judge)) to every LongBench v1 sample, makes ``authors`` the sample's score, and writes
the judged samples and their summary (``loongrl.eval.evaluate.summarize``), which the report reads instead of the
unjudged ones.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loongrl.cli import run, setup_logging
from loongrl.eval.evaluate import SAMPLE_SCHEMA, summarize
from loongrl.inference import Messages, SamplingParams, make_backend, pick_device
from loongrl.io import StageError, atomic_path, read_parquet, write_json, write_parquet

log = logging.getLogger(__name__)

PROMPT_VERSION = "ql-orm-v1"  # part of every cache key: a changed prompt never reuses old verdicts
JUDGE_SYSTEM = (
    "You check whether two answers to a question are the same answer. You are given the question, Answer 1 and "
    "Answer 2. Do not solve the question yourself: decide only whether the two answers state the same value or "
    "meaning, allowing different wording, forms or notation.\n"
    "Reply in this format:\n"
    "1) A short explanation of why the answers are or are not equivalent.\n"
    "2) The verdict, exactly [[YES]] or [[NO]]."
)
JUDGE_USER = "Question: {question}\nAnswer 1: {answer}\nAnswer 2: {gold}\n"
_VERDICT = re.compile(r"\[\[\s*(YES|NO)\s*\]\]", re.IGNORECASE)

Complete = Callable[[list[Messages]], list[str]]


def judge_messages(question: str, answer: str, gold: str) -> Messages:
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": JUDGE_USER.format(question=question, answer=answer, gold=gold)},
    ]


def parse_verdict(reply: str) -> bool | None:
    """The last ``[[YES]]`` / ``[[NO]]`` of a judge reply (True / False), None when it gives none."""
    found = _VERDICT.findall(reply)
    return found[-1].upper() == "YES" if found else None


def judge_identity(cfg: dict[str, Any]) -> str:
    """What a verdict depends on besides its inputs: the endpoint or engine, the model and the prompt version."""
    where = cfg.get("url") or f"local:{cfg.get('backend', 'vllm')}"
    return f"{where}|{cfg['model']}|{PROMPT_VERSION}|{cfg.get('max_new_tokens', 512)}"


class VerdictCache:
    """One JSON file per verdict, named by the sha256 of its key; atomic writes, so parallel jobs are safe."""

    def __init__(self, root: str | Path, identity: str):
        self.root = Path(root)
        self.identity = identity

    def _path(self, question: str, answer: str, gold: str) -> Path:
        key = json.dumps([self.identity, question, answer, gold], ensure_ascii=False)
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, question: str, answer: str, gold: str) -> dict[str, Any] | None:
        path = self._path(question, answer, gold)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def put(self, question: str, answer: str, gold: str, entry: dict[str, Any]) -> None:
        path = self._path(question, answer, gold)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(entry, ensure_ascii=False, sort_keys=True), encoding="utf-8")


def verdicts(
    items: Sequence[tuple[str, str, str]], complete: Complete, cache: VerdictCache, *, batch_size: int = 16
) -> tuple[list[dict[str, Any]], int]:
    """The verdict entry ({verdict: 0/1, parsed, reply}) of every (question, answer, gold) and how many calls the
    judge got; cached items and duplicates are not sent again."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    todo = []
    for item in items:
        if item in out:
            continue
        hit = cache.get(*item)
        if hit is None:
            todo.append(item)
            out[item] = {}
        else:
            out[item] = hit
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        replies = complete([judge_messages(*item) for item in chunk])
        if len(replies) != len(chunk):
            raise StageError(f"judge returned {len(replies)} replies for {len(chunk)} prompts")
        for item, reply in zip(chunk, replies, strict=True):
            parsed = parse_verdict(reply)
            entry = {"verdict": int(bool(parsed)), "parsed": parsed is not None, "reply": reply}
            cache.put(*item, entry)
            out[item] = entry
    return [out[item] for item in items], len(todo)


# ------------------------------------------------------------------------------------------------ the judges
def engine_request(cfg: dict[str, Any], *, gpus: int, seed: int) -> dict[str, Any]:
    """The engine settings of a local judge (``make_backend`` keywords but the device); ``loongrl.enginecheck``
    validates the same dict. Judge prompts are short: the model's own window."""
    return {
        "tensor_parallel_size": max(1, gpus),
        "batch_size": cfg.get("batch_size", 16),
        "seed": seed,
        "gpu_memory_utilization": cfg.get("gpu_memory_utilization", 0.9),
        "enforce_eager": False,
    }


def backend_judge(cfg: dict[str, Any], model_path: str | Path, *, gpus: int, seed: int) -> Complete:
    """A judge model run by our inference backend, greedy, one reply per prompt."""
    engine = make_backend(
        cfg.get("backend", "vllm"), model_path, device=pick_device(gpus), **engine_request(cfg, gpus=gpus, seed=seed)
    )
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=cfg.get("max_new_tokens", 512), seed=seed)
    return lambda prompts: [c[0] for c in engine.generate(prompts, params)]


def endpoint_judge(cfg: dict[str, Any], *, seed: int, retries: int = 4) -> Complete:
    """An OpenAI-compatible ``/chat/completions`` endpoint (DeepSeek's API, a ``vllm serve``, ...), temperature 0;
    429 and 5xx answers are retried with backoff, anything else is one clear error."""
    url = cfg["url"].rstrip("/") + "/chat/completions"
    key = os.environ.get(cfg.get("api_key_env") or "", "")
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}

    def one(messages: Messages) -> str:
        body = {
            "model": cfg["model"],
            "messages": messages,
            "temperature": 0.0,
            "seed": seed,
            "max_tokens": cfg.get("max_new_tokens", 512),
        }
        req = urllib.request.Request(url, json.dumps(body).encode("utf-8"), headers)
        for attempt in range(retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=cfg.get("timeout_s", 120)) as resp:
                    return json.loads(resp.read())["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as exc:
                if (exc.code == 429 or exc.code >= 500) and attempt < retries:
                    time.sleep(min(2**attempt, 30))
                    continue
                raise StageError(f"judge endpoint {url}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, TimeoutError) as exc:
                if attempt < retries:
                    time.sleep(min(2**attempt, 30))
                    continue
                raise StageError(f"judge endpoint {url}: {exc}") from exc
        raise AssertionError("unreachable")

    return lambda prompts: [one(m) for m in prompts]


# ------------------------------------------------------------------------------------------- applying them
def judge_items(samples: list[dict[str, Any]], gold: Callable[[dict[str, Any]], str]) -> list[tuple[str, str, str]]:
    """(question, answer, first gold) of every sample that states an answer (``extracted``: the authors' reading,
    ``kinds.authors_answer``, recorded by evaluate); a sample that states none gets no call and verdict 0."""
    return [
        (json.loads(x["meta"])["question"], x["extracted"].strip(), gold(x)) for x in samples if x["extracted"].strip()
    ]


def apply_verdicts(samples: list[dict[str, Any]], answers: dict[str, list[str]], entries: dict) -> list[dict]:
    """Samples with ``judge``, ``authors`` (now with the judge) and ``qwenlong_l1`` scores; ``authors`` is the
    score. ``entries`` maps (question, answer, gold) to a verdict entry."""
    out = []
    for x in samples:
        scores = {s["name"]: s["value"] for s in x["scores"]}
        key = (json.loads(x["meta"])["question"], x["extracted"].strip(), answers[x["id"]][0])
        entry = entries.get(key)
        verdict = float(entry["verdict"]) if entry else 0.0
        scores["judge"] = verdict
        scores["judge_unparsed"] = float(bool(entry) and not entry["parsed"])
        scores["authors"] = max(scores["authors_boxed"], scores["authors_direct"], verdict)
        scores["qwenlong_l1"] = max(scores["sub_em"], verdict)
        out.append(
            {**x, "score": scores["authors"], "scores": [{"name": n, "value": v} for n, v in sorted(scores.items())]}
        )
    return out


def judge_cell(
    samples: list[dict[str, Any]],
    answers: dict[str, list[str]],
    complete: Complete,
    cache: VerdictCache,
    *,
    batch_size: int = 16,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Judge every LongBench v1 sample of a cell; other samples pass unchanged. Returns the samples and counts."""
    lb = [x for x in samples if x["benchmark"] == "longbench"]
    missing = [x["id"] for x in lb if x["id"] not in answers]
    if missing:
        raise StageError(f"judge: {len(missing)} samples have no task row (first: {missing[0]})")
    items = judge_items(lb, lambda x: answers[x["id"]][0])
    got, calls = verdicts(items, complete, cache, batch_size=batch_size)
    entries = dict(zip(items, got, strict=True))
    judged = iter(apply_verdicts(lb, answers, entries))
    out = [next(judged) if x["benchmark"] == "longbench" else x for x in samples]
    return out, {"judged": len(items), "judge_calls": calls, "cached": len(items) - calls, "samples": len(lb)}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m loongrl.eval.judge", description=__doc__)
    ap.add_argument("--samples", type=Path, required=True, help="an evaluate job's samples parquet")
    ap.add_argument("--summary", type=Path, required=True, help="its summary JSON (run info is kept)")
    ap.add_argument("--tasks", type=Path, required=True, help="its task parquet (the gold answers)")
    ap.add_argument("--judge", required=True, help="JSON of eval.judge")
    ap.add_argument("--model", default="", help="local judge model folder (empty with eval.judge.url)")
    ap.add_argument("--gpus", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out-samples", type=Path, required=True)
    ap.add_argument("--out-summary", type=Path, required=True)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    setup_logging()
    cfg = json.loads(args.judge)
    if not cfg.get("url") and not args.model:
        raise StageError("eval.judge: a judge needs eval.judge.url (an endpoint) or a local model (--model)")
    samples = read_parquet(args.samples, SAMPLE_SCHEMA)
    answers = {r["id"]: list(r["answers"]) for r in read_parquet(args.tasks)}
    if cfg.get("url"):
        complete = endpoint_judge(cfg, seed=args.seed)
    else:
        # the engine starts only if a verdict is missing from the cache (a vLLM start costs minutes)
        engine = functools.cache(lambda: backend_judge(cfg, args.model, gpus=args.gpus, seed=args.seed))

        def complete(prompts: list[Messages]) -> list[str]:
            return engine()(prompts)

    cache = VerdictCache(cfg.get("cache_dir", "resources/judge_cache"), judge_identity(cfg))
    judged, counts = judge_cell(samples, answers, complete, cache, batch_size=cfg.get("batch_size", 16))
    write_parquet(judged, args.out_samples, SAMPLE_SCHEMA)
    info = {k: v for k, v in json.loads(args.summary.read_text(encoding="utf-8")).items() if not k.startswith("by_")}
    info.pop("overall", None)
    info.pop("row_scores", None)
    info["judge"] = {"identity": judge_identity(cfg), "model": cfg["model"], "url": cfg.get("url"), **counts}
    write_json(summarize(judged, info), args.out_summary)
    log.info(
        "judged %d answers of %d samples (%d judge calls, %d cached)",
        counts["judged"],
        counts["samples"],
        counts["judge_calls"],
        counts["cached"],
    )


if __name__ == "__main__":
    run(main)
