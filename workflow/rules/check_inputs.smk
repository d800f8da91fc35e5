rule check_inputs:
    input:
        raw=expand("results/raw_qa/{dataset}.parquet", dataset=DATASETS),
        math=expand("results/math/{task}.parquet", task=["dapo_math", "math_choice"]),
        books=books_dir(),
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.check_inputs"),
    output:
        "results/check_inputs.json",
    log:
        "logs/check_inputs.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        raw=lambda wc, input: [f"{d}={p}" for d, p in zip(DATASETS, input.raw)],
        math=lambda wc, input: [
            f"{t}={p}" for t, p in zip(["dapo_math", "math_choice"], input.math)
        ],
        cfg=as_json(check_inputs_config()),
    shell:
        "python -m loongrl.data.check_inputs --raw {params.raw:q} --math {params.math:q} --books-dir {input.books:q} "
        "--tokenizer {input.tokenizer:q} --config {params.cfg:q} --output {output:q} > {log:q} 2>&1"
