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
EVAL = config.get("eval") or {}
EXTRA_MODELS = EVAL.get("extra_models") or {}
EVAL_MODELS = [*EVAL.get("models", []), *EXTRA_MODELS]
SHORT_BENCHES = ["mmlu", "math500", "ifeval"]
# Every job imports the package from the checkout and knows the config hash (a run tag for MLflow); both go
# through the shell prefix rather than rule params, so they never trigger reruns.
# The resolved config (all overlays merged) is kept per hash under .snakemake/ so that training runs can log it to
# MLflow without making it a rule param (which would retrain on any config change, eval settings included).
RESOLVED_CONFIG = Path(".snakemake/loongrl") / f"config-{CONFIG_HASH}.json"
if not RESOLVED_CONFIG.exists():
    RESOLVED_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    RESOLVED_CONFIG.write_text(json.dumps(config, indent=2, sort_keys=True))
shell.prefix(
    f'export PYTHONPATH="{_PKG}${{{{PYTHONPATH:+:$PYTHONPATH}}}}" LOONGRL_CONFIG_HASH={CONFIG_HASH} '
    f"LOONGRL_CONFIG_FILE={RESOLVED_CONFIG.resolve()}; "
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
    model="|".join(["base", *TRAIN_STAGES, *EXTRA_MODELS]),
    bench="longbench|niah|ruler|mmlu|math500|ifeval",
    cell=r"all|L\d+",
    sbench="|".join(SHORT_BENCHES),
    qa="qa_1|qa_2",


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


def train_launcher(gpus, nodes=1):
    """How a GRPO stage starts, from the GPUs per node and the node count Snakemake grants it.

    ``python`` for CPU / one GPU; ``accelerate launch`` with DeepSpeed ZeRO-3 over one node's GPUs; for several
    nodes, ``srun`` starts workflow/scripts/accelerate_node.sh once per node, which reads its rank and the head
    node from SLURM's variables (an mpi=srun job, which the SLURM jobstep does not wrap in srun).
    """
    cfg = Path(workflow.basedir) / "workflow/accelerate/zero3.yaml"
    if nodes > 1:
        script = Path(workflow.basedir) / "workflow/scripts/accelerate_node.sh"
        return f"srun --nodes {nodes} --ntasks {nodes} --ntasks-per-node 1 bash {script} {cfg} {gpus}"
    if gpus <= 1:
        return "python"
    return (
        f"accelerate launch --config_file {cfg} --num_processes {gpus} --num_machines 1"
    )


def train_nodes():
    return config.get("train", {}).get("nodes", 1)


def train_data(wildcards):
    return (
        f"results/mixture/{config['train']['stages'][wildcards.tstage]['data']}.parquet"
    )


def final_outputs():
    report_md = ["results/report/report.md"] if config.get("eval") else []
    return (
        report_md
        + expand("results/train/{tstage}/summary.json", tstage=TRAIN_STAGES)
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


def train_data_card(wildcards):
    """What describes a stage's data in MLflow: the mixture's data card, or stage II's selection stats."""
    data = train_data(wildcards)
    return data.replace(
        ".parquet", ".stats.json" if data.endswith("stage2.parquet") else ".card.json"
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


# ----------------------------------------------------------------------------------------------- evaluation


def eval_cells():
    """(benchmark, cell) pairs of the eval matrix: RULER has one cell per length, the rest one cell each."""
    if not EVAL:
        return []
    cells = [("longbench", "all"), ("niah", "all")]
    cells += [("ruler", f"L{n}") for n in EVAL["ruler"]["lengths"]]
    return cells + [(b, "all") for b in SHORT_BENCHES]


def eval_summaries():
    return [
        f"results/eval/{m}/{b}.{c}.summary.json"
        for m in EVAL_MODELS
        for b, c in eval_cells()
    ]


def eval_model_dir(wildcards):
    """base: the policy's starting model; a stage: its final model; an extra model: a local folder or a hub id."""
    if wildcards.model == "base":
        return model_dir("policy")
    if wildcards.model in EXTRA_MODELS:
        ref = EXTRA_MODELS[wildcards.model]
        return ref if Path(ref).is_dir() else f"resources/models/{model_slug(ref)}"
    return f"results/train/{wildcards.model}/model"


def eval_books_dir():
    return (
        "resources/books"
        if config["retrieval"]["source"] == "download"
        else EVAL["books_dir"]
    )


def longbench_dir():
    lb = EVAL["longbench"]
    return "resources/eval/longbench" if lb["source"] == "download" else lb["local_dir"]


def short_input(bench):
    if EVAL["short"]["source"] == "download":
        return f"resources/eval/{bench}/MANIFEST.json"
    return EVAL["short"]["local"][bench]


def ruler_qa_files():
    r = EVAL["ruler"]
    wanted = [t for t in r["tasks"] if t.startswith("qa_")]
    if r["qa_source"] == "download":
        return {
            t: f"resources/eval/ruler_{t}/{r['qa_downloads'][t]['file']}"
            for t in wanted
        }
    return {t: r["qa_local"][t] for t in wanted}


def input_dir(path):
    """The folder a builder reads: a download's folder (given its MANIFEST.json) or the local folder itself."""
    return str(Path(path).parent) if str(path).endswith("MANIFEST.json") else str(path)


def longbench_inputs():
    if EVAL["longbench"]["source"] == "download":
        return ["resources/eval/longbench/MANIFEST.json"]
    return [longbench_dir()]


def eval_task_inputs(wildcards):
    b = wildcards.bench
    if b == "longbench":
        return longbench_inputs()
    if b == "niah":
        return [eval_books_dir()]
    if b == "ruler":
        return [eval_books_dir(), *ruler_qa_files().values()]
    return [short_input(b)]


def eval_task_params(b):
    """The eval settings the builder of benchmark ``b`` reads, and only those (adding a model reruns no builder)."""
    keys = {
        "longbench": ["longbench", "validation"],
        "niah": ["niah"],
        "ruler": ["ruler"],
    }.get(b, ["short"])
    out = {"system_prompt": EVAL["system_prompt"], **{k: EVAL[k] for k in keys}}
    if b == "ruler":
        out["ruler"] = {**EVAL["ruler"], "qa_files": ruler_qa_files()}
    return as_json(out)


def eval_run_params():
    """The generation settings of an evaluate job (decoding, engine, YaRN)."""
    keys = ["backend", "gpu_memory_utilization", "batch_size", "decoding", "yarn"]
    return as_json({k: EVAL[k] for k in keys if k in EVAL})


def eval_max_new_tokens(wildcards):
    if wildcards.bench in ("niah", "ruler"):
        return EVAL[wildcards.bench]["max_new_tokens"]
    return EVAL["decoding"]["max_new_tokens"]


def select_best_stage():
    return config.get("train", {}).get("select_best")


def train_eval_data(wildcards):
    if EVAL and wildcards.tstage == select_best_stage():
        return {"val": "results/eval/validation.parquet"}
    return {}
