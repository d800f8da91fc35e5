rule download_math:
    output:
        "resources/math/{task}/MANIFEST.json",
    log:
        "logs/math/{task}.download.log",
    retries: 1
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wc: math_spec(wc.task)["url"],
        file=lambda wc: math_spec(wc.task)["file"],
        pin=lambda wc: pin_args(f"math.{math_key(wc.task)}.sha256"),
    shell:
        "python -m loongrl.download --dataset {wildcards.task:q} --url {params.url:q} --files {params.file:q} "
        '{params.pin:q} --out-dir "$(dirname {output:q})" > {log:q} 2>&1'


rule math_data:
    input:
        lambda wc: math_input(wc.task),
        code=stage_code("loongrl.data.math_data"),
    output:
        "results/math/{task}.parquet",
    log:
        "logs/math/{task}.log",
    conda:
        "../../envs/data.yaml"
    params:
        file=lambda wc: math_file(wc.task),
    shell:
        "python -m loongrl.data.math_data --task {wildcards.task:q} --input {params.file:q} --output {output:q} "
        "> {log:q} 2>&1"
