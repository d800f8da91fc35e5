rule fill_context:
    input:
        pool="results/split/{dataset}/{pool}.parquet",
        fillers="results/split/{dataset}/fillers.parquet",
        tokenizer=model_dir("policy"),
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
        "python -m loongrl.data.fill --pool {input.pool} --fillers {input.fillers} --tokenizer {input.tokenizer} "
        "--length {wildcards.length} --params {params.cfg:q} --system-prompt {params.system} --seed {params.seed} "
        "--output {output.data} --stats {output.stats} > {log} 2>&1"
