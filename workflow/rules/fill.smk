rule fill_context:
    input:
        pool="results/split/{dataset}/{pool}.parquet",
        fillers="results/split/{dataset}/fillers.parquet",
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.fill"),
    output:
        data="results/fill/{pool}/{dataset}.L{length}.parquet",
        stats="results/fill/{pool}/{dataset}.L{length}.stats.json",
    log:
        "logs/fill/{pool}/{dataset}.L{length}.log",
    benchmark:
        "benchmarks/fill/{pool}/{dataset}.L{length}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=32000,
        runtime="4h",
    params:
        cfg=as_json(config["fill"]),
        system=config["mixture"]["system_prompt"],
        seed=config["seed"],
    shell:
        "python -m loongrl.data.fill --pool {input.pool:q} --fillers {input.fillers:q} --tokenizer {input.tokenizer:q} "
        "--length {wildcards.length:q} --params {params.cfg:q} --system-prompt {params.system:q} --seed {params.seed:q} "
        "--output {output.data:q} --stats {output.stats:q} > {log:q} 2>&1"
