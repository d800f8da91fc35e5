def filter_gpus():
    """GPUs for a filter job: vLLM's tensor-parallel size; the transformers backend uses at most one."""
    f = config["filter"]
    return f.get("tensor_parallel_size", 1) if f["backend"] == "vllm" else 1


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
    params:
        cfg=as_json(config["filter"]),
        name=config["models"]["filter"],
        seed=config["seed"],
        work="resources/cache/filter/{dataset}",
    threads: 4
    resources:
        gpu=filter_gpus(),
        runtime="12h",
        mem_mb=64000,
    conda:
        "../../envs/filter.yaml"
    shell:
        "python -m loongrl.filter_source --input {input.raw} --model {input.model} --model-name {params.name:q} "
        "--params {params.cfg:q} --seed {params.seed} --gpus {resources.gpu} --work-dir {params.work} "
        "--output {output} > {log} 2>&1"


rule filter_source_fallback:
    input:
        raw="results/raw_qa/{dataset}.parquet",
        passes="results/filter/{dataset}.passes.parquet",
        model=model_dir("filter_fallback") if config["models"].get("filter_fallback") else [],
    output:
        "results/filter/{dataset}.fallback.parquet",
    log:
        "logs/filter/{dataset}.fallback.log",
    benchmark:
        "benchmarks/filter/{dataset}.fallback.tsv"
    params:
        cfg=as_json(config["filter"]),
        name=config["models"].get("filter_fallback") or "",
        seed=config["seed"] + 1,
        work="resources/cache/filter_fallback/{dataset}",
    threads: 4
    resources:
        gpu=filter_gpus(),
        runtime="12h",
        mem_mb=64000,
    conda:
        "../../envs/filter.yaml"
    shell:
        "python -m loongrl.filter_source --input {input.raw} --only-failed {input.passes} --model {input.model} "
        "--model-name {params.name:q} --params {params.cfg:q} --seed {params.seed} --gpus {resources.gpu} "
        "--work-dir {params.work} --output {output} > {log} 2>&1"
