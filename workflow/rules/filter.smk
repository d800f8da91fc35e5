rule filter_source:
    input:
        raw="results/raw_qa/{dataset}.parquet",
        model=model_dir("filter"),
        checked=ancient("results/check_inputs.json"),  # order only: no GPU job before the inputs suffice
        code=stage_code("loongrl.data.filter_source"),
    output:
        "results/filter/shards/{dataset}.{shard}.passes.parquet",
    log:
        "logs/filter/{dataset}.{shard}.log",
    benchmark:
        "benchmarks/filter/{dataset}.{shard}.tsv"
    conda:
        "../../envs/filter.yaml"
    threads: 4
    resources:
        gpu=filter_gpus(),
        runtime="12h",
        mem_mb=64000,
    params:
        cfg=filter_engine_params(),
        name=config["models"]["filter"],
        seed=config["seed"],
        select=filter_select,
        work="resources/cache/filter/{dataset}.{shard}",
    shell:
        "python -m loongrl.data.filter_source run --input {input.raw:q} --model {input.model:q} "
        "--model-name {params.name:q} --params {params.cfg:q} --seed {params.seed:q} {params.select:q} "
        "--gpus {resources.gpu} --work-dir {params.work:q} --output {output:q} > {log:q} 2>&1"


checkpoint filter_round:
    input:
        chunks=round_chunks,
        code=stage_code("loongrl.data.filter_source"),
    output:
        "results/filter/rounds/{dataset}.r{round}.json",
    log:
        "logs/filter/{dataset}.r{round}.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        plan=lambda wc: as_json(filter_plan(wc.dataset)),
    shell:
        "python -m loongrl.data.filter_source round {input.chunks:q} --dataset {wildcards.dataset:q} "
        "--round {wildcards.round:q} --plan {params.plan:q} --output {output:q} > {log:q} 2>&1"


rule gather_filter:
    input:
        shards=filter_shards("results/filter/shards/{dataset}.{shard}.passes.parquet"),
        code=stage_code("loongrl.data.filter_source"),
    output:
        "results/filter/{dataset}.passes.parquet",
    log:
        "logs/filter/{dataset}.gather.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.data.filter_source gather {input.shards:q} --output {output:q} > {log:q} 2>&1"


rule filter_source_fallback:
    input:
        raw="results/raw_qa/{dataset}.parquet",
        passes="results/filter/{dataset}.passes.parquet",
        model=(
            model_dir("filter_fallback") if config["models"]["filter_fallback"] else []
        ),
        code=stage_code("loongrl.data.filter_source"),
    output:
        "results/filter/shards/{dataset}.{shard}.fallback.parquet",
    log:
        "logs/filter/{dataset}.{shard}.fallback.log",
    benchmark:
        "benchmarks/filter/{dataset}.{shard}.fallback.tsv"
    conda:
        "../../envs/filter.yaml"
    threads: 4
    resources:
        gpu=filter_gpus(),
        runtime="12h",
        mem_mb=64000,
    params:
        cfg=filter_engine_params(),
        name=config["models"]["filter_fallback"] or "",
        seed=config["seed"] + 1,
        shards=config["filter"]["shards"],
        work="resources/cache/filter_fallback/{dataset}.{shard}",
    shell:
        "python -m loongrl.data.filter_source run --input {input.raw:q} --only-failed {input.passes:q} "
        "--model {input.model:q} --model-name {params.name:q} --params {params.cfg:q} --seed {params.seed:q} "
        "--shard {wildcards.shard:q} --shards {params.shards:q} --gpus {resources.gpu} --work-dir {params.work:q} "
        "--output {output:q} > {log:q} 2>&1"


rule gather_filter_fallback:
    input:
        shards=filter_shards("results/filter/shards/{dataset}.{shard}.fallback.parquet"),
        code=stage_code("loongrl.data.filter_source"),
    output:
        "results/filter/{dataset}.fallback.parquet",
    log:
        "logs/filter/{dataset}.fallback.gather.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.data.filter_source gather {input.shards:q} --output {output:q} > {log:q} 2>&1"
