import json
import sys
from pathlib import Path

# The package lives in workflow/loongrl; every job (local, SLURM jobstep, conda env) imports it from the checkout.
_PKG = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, _PKG)

from loongrl.config import config_hash, validate_config  # noqa: E402
from loongrl.models import TINY_MODEL, model_slug  # noqa: E402

validate_config(config)

DATASETS = config["raw_qa"]["datasets"]
LENGTHS = config["fill"]["lengths"]
TRAIN_LENGTH = config["fill"]["train_length"]
STAGES = list(config["mixture"]["stages"])
TRAIN_STAGES = list(config.get("train", {}).get("stages", {}))
CONFIG_HASH = config_hash(config)
# Every job imports the package from the checkout and knows the config hash (a run tag for MLflow); both go
# through the shell prefix rather than rule params, so they never trigger reruns.
shell.prefix(
    f'export PYTHONPATH="{_PKG}${{{{PYTHONPATH:+:$PYTHONPATH}}}}" LOONGRL_CONFIG_HASH={CONFIG_HASH}; '
)
# MLflow: a sqlite store under results/ unless MLFLOW_TRACKING_URI is set (the train CLI gives that precedence).
MLFLOW_URI = f"sqlite:///{Path('results/mlflow.db').resolve()}"


wildcard_constraints:
    dataset="|".join(DATASETS),
    length=r"\d+",
    pool="plain|keychain",
    stage="|".join(STAGES),
    task="dapo_math|math_choice",
    tstage="|".join(TRAIN_STAGES) or "none",


def model_dir(role):
    """Local folder of the model the config names for ``role`` (policy, filter, filter_fallback)."""
    return f"resources/models/{model_slug(config['models'][role])}"


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def raw_qa_inputs(wildcards):
    if config["raw_qa"]["source"] == "download":
        return f"resources/raw/{wildcards.dataset}/MANIFEST.json"
    spec = config["raw_qa"]["local_files"][wildcards.dataset]
    folder = Path(config["raw_qa"]["local_dir"]) / spec["folder"]
    return sorted(str(p) for pat in spec["files"] for p in folder.glob(pat))


def raw_qa_patterns(wildcards):
    raw = config["raw_qa"]
    section = "downloads" if raw["source"] == "download" else "local_files"
    return raw[section][wildcards.dataset]["files"]


def filter_fallback_input(wildcards):
    if config["models"].get("filter_fallback"):
        return f"results/filter/{wildcards.dataset}.fallback.parquet"
    return []


def books_dir():
    if config["retrieval"]["source"] == "download":
        return "resources/books"
    return config["retrieval"]["books_dir"]


def math_input(task):
    if config["math"]["source"] == "download":
        return []
    key = "dapo" if task == "dapo_math" else "math_choice"
    return config["math"][key]["local_file"]


def mixture_exclude(stage):
    return config["mixture"]["stages"][stage]["exclude"]


def train_init_model(wildcards):
    init = config["train"]["stages"][wildcards.tstage]["init"]
    return model_dir("policy") if init == "base" else f"results/train/{init}/model"


def train_launcher(gpus):
    """``python`` for CPU / one GPU; ``accelerate launch`` with DeepSpeed ZeRO-3 over the job's GPUs otherwise.

    Multi-node jobs (SLURM ``nodes`` > 1) need one launcher per node with the rank and rendezvous address from
    SLURM's variables; that path is not wired yet, so a job spans one node.
    """
    if gpus <= 1:
        return "python"
    cfg = Path(workflow.basedir) / "workflow/accelerate/zero3.yaml"
    return (
        f"accelerate launch --config_file {cfg} --num_processes {gpus} --num_machines 1"
    )


def train_data(wildcards):
    return (
        f"results/mixture/{config['train']['stages'][wildcards.tstage]['data']}.parquet"
    )


def final_outputs():
    return (
        expand("results/train/{tstage}/summary.json", tstage=TRAIN_STAGES)
        + expand("results/mixture/{stage}.parquet", stage=STAGES)
        + expand("results/mixture/{stage}.card.md", stage=STAGES)
        + ["results/mixture/preflight.json"]
        + expand(
            "results/keychain/{dataset}.L{length}.parquet",
            dataset=DATASETS,
            length=LENGTHS,
        )
        + expand(
            "results/fill/plain/{dataset}.L{length}.parquet",
            dataset=DATASETS,
            length=LENGTHS,
        )
    )


def filter_gpus():
    """GPUs for a filter job: vLLM's tensor-parallel size; the transformers backend uses at most one."""
    f = config["filter"]
    return f.get("tensor_parallel_size", 1) if f["backend"] == "vllm" else 1


def mixture_qa_inputs(kind):
    folder = "keychain" if kind == "keychain" else "fill/plain"

    def inner(wildcards):
        if kind in mixture_exclude(wildcards.stage):
            return {}
        return {
            ds: f"results/{folder}/{ds}.L{TRAIN_LENGTH}.parquet"
            for ds, n in config["mixture"]["counts"][kind].items()
            if n
        }

    return inner


def pairs(mapping):
    return " ".join(f"{k}={v}" for k, v in sorted(mapping.items()))
