rule math_data:
    input:
        lambda wc: math_input(wc.task),
    output:
        "results/math/{task}.parquet",
    log:
        "logs/math/{task}.log",
    localrule: config["math"]["source"] == "download"
    conda:
        "../../envs/data.yaml"
    params:
        source=config["math"]["source"],
        hf=lambda wc: (
            "--hf-dataset "
            + config["math"]["dapo" if wc.task == "dapo_math" else "math_choice"][
                "hf_dataset"
            ]
            if config["math"]["source"] == "download"
            else ""
        ),
        inp=lambda wc, input: f"--input {input[0]}" if input else "",
    shell:
        "python -m loongrl.data.math_data --task {wildcards.task} --source {params.source} {params.inp} "
        "{params.hf} --output {output} > {log} 2>&1"
