rule build_tiny_model:
    output:
        directory(f"resources/models/{TINY_MODEL}"),
    log:
        f"logs/models/{TINY_MODEL}.log",
    conda:
        "../../envs/data.yaml"
    params:
        seed=config["seed"],
    shell:
        "python -m loongrl.models --name tiny-qwen2 --seed {params.seed} --out-dir {output} > {log} 2>&1"


rule download_model:
    output:
        directory("resources/models/{model}"),
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model=r"(?!tiny-qwen2$)[^/]+",
    retries: 2
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        repo=lambda wc: wc.model.replace("--", "/"),
    shell:
        "python -m loongrl.models --name {params.repo} --out-dir {output} > {log} 2>&1"
