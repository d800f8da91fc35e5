# LoongRL reproduction: raw multi-hop QA -> difficulty filter -> long-context filling -> KeyChain -> mixture
# -> staged GRPO -> evaluation matrix -> report. See README.md for how to run it.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


# The HTML report opens on what this run did and its headline (written by the report rule); before the report
# rule has run, on the pipeline's general description.
LANDING = Path("results/report/landing.rst")


report: str(LANDING) if LANDING.exists() else "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/helpers/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/raw_qa.smk"
include: "workflow/rules/check_inputs.smk"
include: "workflow/rules/filter.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/fill.smk"
include: "workflow/rules/keychain.smk"
include: "workflow/rules/retrieval.smk"
include: "workflow/rules/math.smk"
include: "workflow/rules/mixture.smk"
include: "workflow/rules/canary.smk"


if TRAIN:

    include: "workflow/rules/train.smk"


if EVAL:

    include: "workflow/rules/eval.smk"
    include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
    localrule: True
