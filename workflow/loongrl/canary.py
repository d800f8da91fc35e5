"""GPU canary: record what devices a (SLURM) job actually received.

Snakemake does not assign ``CUDA_VISIBLE_DEVICES`` per job, and schedulers differ in how they expose GPUs, so this
job writes what it sees: the scheduler's variables, ``nvidia-smi -L`` when present, and torch's device count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

from loongrl.cli import run
from loongrl.io import write_json

VARS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_NUM_NODES",
    "SLURM_NTASKS",
    "SLURM_CPUS_PER_TASK",
    "SLURM_JOB_GPUS",
    "SLURM_GPUS",
    "SLURM_GPUS_ON_NODE",
    "SLURM_TRES_PER_TASK",
    "CUDA_VISIBLE_DEVICES",
)


def probe() -> dict:
    info = {"host": socket.gethostname(), "env": {k: os.environ.get(k) for k in VARS}}
    if shutil.which("nvidia-smi"):
        res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        info["nvidia_smi"] = res.stdout.strip().splitlines()
    try:
        import torch

        info["torch_cuda_devices"] = torch.cuda.device_count()
    except ImportError:
        info["torch_cuda_devices"] = None
    return info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.canary", description=__doc__)
    ap.add_argument("--requested-gpus", type=int, required=True)
    ap.add_argument("--output", type=Path, required=True)
    args = ap.parse_args(argv)
    info = {"requested_gpus": args.requested_gpus, **probe()}
    print(json.dumps(info, indent=2))
    write_json(info, args.output)


if __name__ == "__main__":
    run(main)
