rule split:
    input:
        raw="results/raw_qa/{dataset}.parquet",
        passes="results/filter/{dataset}.passes.parquet",
        fallback=filter_fallback_input,
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.split"),
    output:
        plain="results/split/{dataset}/plain.parquet",
        keychain="results/split/{dataset}/keychain.parquet",
        fillers="results/split/{dataset}/fillers.parquet",
        stats="results/split/{dataset}/stats.json",
    log:
        "logs/split/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=32000,
        runtime="2h",
    params:
        cfg=as_json(
            {
                "keep_min": config["filter"]["keep_min"],
                "keep_max": config["filter"]["keep_max"],
                **config["split"],
            }
        ),
        fallback=lambda wc, input: (
            ["--fallback-passes", input.fallback] if input.fallback else []
        ),
    shell:
        "python -m loongrl.data.split --raw {input.raw:q} --passes {input.passes:q} {params.fallback:q} "
        "--tokenizer {input.tokenizer:q} --params {params.cfg:q} --plain {output.plain:q} "
        "--keychain {output.keychain:q} --fillers {output.fillers:q} --stats {output.stats:q} > {log:q} 2>&1"
