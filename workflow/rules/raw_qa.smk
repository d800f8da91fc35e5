rule download_raw_qa:
    output:
        manifest="resources/raw/{dataset}/MANIFEST.json",
    log:
        "logs/raw_qa/{dataset}.download.log",
    retries: 1
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wc: config["raw_qa"]["downloads"][wc.dataset]["url"],
        files=lambda wc: config["raw_qa"]["downloads"][wc.dataset]["files"],
        pin=lambda wc: pin_args(f"raw_qa.downloads.{wc.dataset}.sha256"),
        retries=config["raw_qa"]["retries"],
    shell:
        "python -m loongrl.download --dataset {wildcards.dataset:q} --url {params.url:q} "
        "--files {params.files:q} {params.pin:q} --retries {params.retries:q} "
        '--out-dir "$(dirname {output.manifest:q})" > {log:q} 2>&1'


rule normalise_raw_qa:
    input:
        raw=raw_qa_inputs,
        code=stage_code("loongrl.data.raw_qa"),
    output:
        rows="results/raw_qa/{dataset}.parquet",
        stats="results/raw_qa/{dataset}.stats.json",
    log:
        "logs/raw_qa/{dataset}.normalise.log",
    conda:
        "../../envs/data.yaml"
    params:
        patterns=raw_qa_patterns,
        max_q=config["raw_qa"]["max_questions"] or 0,
        inputs=lambda wc, input: [
            str(Path(p).parent) if p.endswith("MANIFEST.json") else p
            for p in input.raw
        ],
    shell:
        "python -m loongrl.data.raw_qa --dataset {wildcards.dataset:q} --inputs {params.inputs:q} "
        "--patterns {params.patterns:q} --max-questions {params.max_q:q} --output {output.rows:q} "
        "--stats {output.stats:q} > {log:q} 2>&1"
