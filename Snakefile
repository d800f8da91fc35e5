# LoongRL reproduction: raw multi-hop QA -> difficulty filter -> long-context filling -> KeyChain -> mixture
# -> staged GRPO -> evaluation matrix -> report. See README.md for how to run it.
from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


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
