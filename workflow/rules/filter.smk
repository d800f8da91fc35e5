rule filter_source:
    input:
        raw="results/raw_qa/{dataset}.parquet",
        model=model_dir("filter"),
    output:
        "results/filter/{dataset}.passes.parquet",
    log:
        "logs/filter/{dataset}.log",
    benchmark:
        "benchmarks/filter/{dataset}.tsv"
    conda:
        "../../envs/filter.yaml"
    threads: 4
    resources:
        gpu=filter_gpus(),
        runtime="12h",
        mem_mb=64000,
    params:
        cfg=as_json(config["filter"]),
        name=config["models"]["filter"],
        seed=config["seed"],
        work="resources/cache/filter/{dataset}",
    shell:
        "python -m loongrl.data.filter_source --input {input.raw} --model {input.model} --model-name {params.name:q} "
        "--params {params.cfg:q} --seed {params.seed} --gpus {resources.gpu} --work-dir {params.work} "
        "--output {output} > {log} 2>&1"


rule filter_source_fallback:
    input:
        raw="results/raw_qa/{dataset}.parquet",
        passes="results/filter/{dataset}.passes.parquet",
        model=(
            model_dir("filter_fallback") if config["models"]["filter_fallback"] else []
        ),
    output:
        "results/filter/{dataset}.fallback.parquet",
    log:
        "logs/filter/{dataset}.fallback.log",
    benchmark:
        "benchmarks/filter/{dataset}.fallback.tsv"
    conda:
        "../../envs/filter.yaml"
    threads: 4
    resources:
        gpu=filter_gpus(),
        runtime="12h",
        mem_mb=64000,
    params:
        cfg=as_json(config["filter"]),
        name=config["models"]["filter_fallback"] or "",
        seed=config["seed"] + 1,
        work="resources/cache/filter_fallback/{dataset}",
    shell:
        "python -m loongrl.data.filter_source --input {input.raw} --only-failed {input.passes} --model {input.model} "
        "--model-name {params.name:q} --params {params.cfg:q} --seed {params.seed} --gpus {resources.gpu} "
        "--work-dir {params.work} --output {output} > {log} 2>&1"
