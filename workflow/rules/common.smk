import json
import re
import os
import sys
from pathlib import Path

# The package lives in workflow/loongrl; every job (local, SLURM jobstep, conda env) imports it from the checkout.
_PKG = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, _PKG)

from loongrl.config import config_hash  # noqa: E402
from loongrl.eval.registry import BENCHMARKS, SHORT, eval_cells  # noqa: E402
from loongrl.eval.registry import haystack_books  # noqa: E402
from loongrl.eval.kinds import KINDS, kinds_in_use, model_kind  # noqa: E402
from loongrl.data.filter_source import first_round  # noqa: E402
from loongrl.data.released import CONFIGS as RELEASED_CONFIGS  # noqa: E402
from loongrl.models import LOCAL_MODELS, WHEEL_MODELS, model_slug  # noqa: E402
from loongrl.pipeline import validate_config  # noqa: E402
from loongrl.sources import module_sources  # noqa: E402

# Schema + cross-key checks; fills in the schema's default of every optional key, so rules index config directly.
validate_config(config)

DATASETS = config["raw_qa"]["datasets"]
LENGTHS = config["fill"]["lengths"]
TRAIN_LENGTH = config["fill"]["train_length"]
RETRIEVAL_LENGTH = config["retrieval"].get("length") or TRAIN_LENGTH
RELEASED = config["mixture"].get("qa_source") == "released"
STAGES = list(config["mixture"]["stages"])
TRAIN = config.get("train")  # optional section: without it the DAG ends at the mixtures
TRAIN_STAGES = list(TRAIN["stages"]) if TRAIN else []
EVAL = config.get(
    "eval"
)  # optional section: without it there is no eval matrix and no report
EXTRA_MODELS = (EVAL["extra_models"] or {}) if EVAL else {}
EVAL_MODELS = [*EVAL["models"], *EXTRA_MODELS] if EVAL else []
CONFIG_HASH = config_hash(config)
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


wildcard_constraints:
    dataset="|".join(DATASETS),
    length=r"\d+",
    pool="plain|keychain",
    stage="|".join(STAGES),
    task="dapo_math|math_choice",
    tstage="|".join(TRAIN_STAGES) or "none",
    model="|".join(["base", *TRAIN_STAGES, *EXTRA_MODELS]),
    bench="|".join(BENCHMARKS),
    cell=r"all|L\d+|short|medium|long",
    sbench="|".join(SHORT),
    qa="qa_1|qa_2",
    shard=r"\d+",
    round=r"\d+",
    kind="|".join(KINDS) + "|keychain|plain_qa",
    rconfig="|".join(RELEASED_CONFIGS.values()),


def model_dir(role):
    """Local folder of the model the config names for ``role`` (policy, filter, filter_fallback)."""
    return f"resources/models/{model_slug(config['models'][role])}"


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def stage_code(module):
    """The package files ``python -m <module>`` runs, as an input of the stage's jobs. Snakemake tracks only the
    shell text of a job, so without them an edit to a stage's module (or to a core module it imports) would rerun
    nothing. Relative paths, so that a moved checkout reruns nothing. Downloads take none: their outputs are
    external data, pinned by sha256."""
    return [os.path.relpath(p) for p in module_sources(module)]


def pairs(mapping):
    """``k=v`` arguments, one a key: a list, so that a rule's ``{params.x:q}`` quotes each one."""
    return [f"{k}={v}" for k, v in sorted(mapping.items())]


def pin_args(key):
    """The download's pin arguments: ``--sha256 <hex>`` when the config pins it at ``key`` (a dotted path; a map
    of pins for the books: ``--sha256 id=hex ...``), ``--pin-key <key>`` so that its messages name the key to set,
    and ``--strict`` under ``strict_downloads`` (an unpinned download is then an error, loongrl.download.check_pin).

    A list of arguments, quoted one by one by the rule's ``{params.pin:q}``: no config value reaches a shell
    command unquoted (snakemake/utils.py:437-512 format each element of a list and quote it).
    """
    val = config
    for part in key.split("."):
        val = val.get(part) if isinstance(val, dict) else None
    if isinstance(val, dict):
        sha = pairs(val)
    else:
        sha = [val] if val else []
    strict = ["--strict"] if config["strict_downloads"] else []
    return (["--sha256", *sha] if sha else []) + ["--pin-key", key] + strict


def final_outputs():
    report_md = ["results/report/report.md"] if EVAL else []
    return (
        report_md
        + expand("results/train/{tstage}/summary.json", tstage=TRAIN_STAGES)
        + expand("results/mixture/{stage}.parquet", stage=STAGES)
        + expand("results/mixture/{stage}.card.md", stage=STAGES)
        + ["results/mixture/preflight.json"]
        + (
            ["results/released/fidelity.md"]
            if config["mixture"]["released"]["compare"] and not RELEASED
            else []
        )
        # our synthesis at every length, unless the QA rows are the authors' release (then nothing is filtered) or
        # the config asks only for what a mixture takes (fill.build: mixture; the mixture rule pulls those rows)
        + (
            []
            if RELEASED or config["fill"]["build"] == "mixture"
            else expand(
                "results/{kind}/{dataset}.L{length}.parquet",
                kind=["keychain", "fill/plain"],
                dataset=DATASETS,
                length=LENGTHS,
            )
        )
    )
