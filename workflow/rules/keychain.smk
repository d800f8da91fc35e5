rule insert_keychain:
    input:
        filled="results/fill/keychain/{dataset}.L{length}.parquet",
        raw="results/raw_qa/{dataset}.parquet",
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.keychain"),
    output:
        data="results/keychain/{dataset}.L{length}.parquet",
        stats="results/keychain/{dataset}.L{length}.stats.json",
    log:
        "logs/keychain/{dataset}.L{length}.log",
    benchmark:
        "benchmarks/keychain/{dataset}.L{length}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=32000,
        runtime="2h",
    params:
        cfg=as_json(config["keychain"]),
        system=config["mixture"]["system_prompt"],
        seed=config["seed"],
    shell:
        "python -m loongrl.data.keychain --filled {input.filled:q} --raw {input.raw:q} --tokenizer {input.tokenizer:q} "
        "--length {wildcards.length:q} --params {params.cfg:q} --system-prompt {params.system:q} "
        "--seed {params.seed:q} --output {output.data:q} --stats {output.stats:q} > {log:q} 2>&1"
