# The end of the DAG: every eval cell's summary -> tables beside the paper's, figures, a markdown report; the same
# files carry report() flags so `snakemake --report results/report.html` embeds them.


rule report:
    input:
        summaries=eval_summaries(),
        paper="workflow/report/paper_tables.yaml",
        metrics=expand("results/train/{tstage}/metrics.jsonl", tstage=TRAIN_STAGES),
        mixtures=expand("results/mixture/{stage}.parquet", stage=STAGES),
        contamination="results/eval/contamination.json",
        code=stage_code("loongrl.report"),
    output:
        md="results/report/report.md",
        # the HTML report's landing text once this exists (Snakefile `report:`): what ran and its headline
        landing="results/report/landing.rst",
        effect=report(
            "results/report/tables/effect.csv",
            category="1. The effect (base vs trained)",
            caption="../report/effect.rst",
        ),
        effect_figures=report(
            expand(
                "results/report/figures/{fig}.png",
                fig=["effect_vs_length"]
                + (["training_curves"] if TRAIN_STAGES else []),
            ),
            category="1. The effect (base vs trained)",
            caption="../report/effect_figures.rst",
        ),
        tables=report(
            expand(
                "results/report/tables/{table}.csv",
                table=["table2", "table3", "table6", "table7", "scorers"]
                + sorted(EVAL["ablations"] or {}),
            ),
            category="Tables",
            caption="../report/tables.rst",
        ),
        # a heatmap per model only where NIAH is measured (eval.benchmarks may leave it out: make effect's recipes)
        niah=report(
            expand(
                "results/report/figures/niah_{model}.png",
                model=(
                    EVAL_MODELS
                    if any(b == "niah" for b, _ in eval_cells(EVAL))
                    else []
                ),
            ),
            category="Figures",
            subcategory="Needle in a haystack",
            caption="../report/niah.rst",
        ),
        figures=report(
            expand(
                "results/report/figures/{fig}.png",
                fig=["ruler_vs_length", "data_lengths"],
            ),
            category="Figures",
            caption="../report/figures.rst",
        ),
    log:
        "logs/report.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        hash=CONFIG_HASH,
        policy=config["models"]["policy"],
        preset=config.get("preset") or "none",
        ablations=as_json(EVAL["ablations"] or {}),
    shell:
        "python -m loongrl.report --summaries {input.summaries:q} --paper {input.paper:q} "
        "--train-metrics {input.metrics:q} --mixtures {input.mixtures:q} --contamination {input.contamination:q} "
        '--ablations {params.ablations:q} --config-hash {params.hash:q} --policy {params.policy:q} --preset {params.preset:q} --out-dir "$(dirname {output.md:q})" > {log:q} 2>&1'
