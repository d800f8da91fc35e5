"""One GRPO stage through ``loongrl.train.grpo.run_stage`` with a toy reward, for the multi-process resume test.

A random-init model scores 0 under every real verifier, so every group has zero advantage, the loss is 0 and the
weights never move: a resume check on that would pass whatever resume did. This reward (the share of ASCII letters
in the completion) varies within every group, so the policy really trains and the loss after a resume can be
compared with an unkilled run's. Everything else is the production path: run under `accelerate launch` with
workflow/accelerate/zero3.yaml, run_stage's checkpointing and resume, TRL's GRPOTrainer on DeepSpeed ZeRO-3.

    accelerate launch --config_file workflow/accelerate/zero3.yaml --num_processes 2 tests/helpers/zero3_stage.py \\
        MODEL DATA PARAMS_JSON WORK_DIR OUT_DIR STEPS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def ascii_share(completions, **_kwargs) -> list[float]:
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isascii() and ch.isalpha() for ch in t) / max(1, len(t)) for t in texts]


def main() -> None:
    from loongrl.cli import setup_logging
    from loongrl.train.grpo import run_stage

    model, data, params, work, out, steps = sys.argv[1:7]
    setup_logging()
    out_dir = Path(out)
    run_stage(
        model_path=Path(model),
        data_path=Path(data),
        train=json.loads(Path(params).read_text()),
        steps=int(steps),
        work_dir=Path(work),
        output_dir=out_dir / "model",
        metrics_path=out_dir / "metrics.jsonl",
        summary_path=out_dir / "summary.json",
        reward_funcs=[ascii_share],
        world_size=2,
        seed=7,
    )
    # What this rank saw of its world, for the multi-node test: size, rank, and the process group's timeout.
    import os

    import torch
    import torch.distributed as dist
    from torch.distributed.distributed_c10d import _get_default_group

    rank = dist.get_rank()
    backend = _get_default_group()._get_backend(torch.device("cpu"))
    info = {
        "world_size": dist.get_world_size(),
        "rank": rank,
        "node_rank": int(os.environ.get("GROUP_RANK", "-1")),
        "timeout_s": backend.options._timeout.total_seconds(),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
