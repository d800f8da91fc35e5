rule build_tiny_model:
    output:
        directory(f"resources/models/{TINY_MODEL}"),
    log:
        f"logs/models/{TINY_MODEL}.log",
    params:
        seed=config["seed"],
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.models --name tiny-qwen2 --seed {params.seed} --out-dir {output} > {log} 2>&1"


rule download_model:
    output:
        directory("resources/models/{model}"),
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model=r"(?!tiny-qwen2$)[^/]+",
    params:
        repo=lambda wc: wc.model.replace("--", "/"),
    localrule: True
    retries: 2
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.models --name {params.repo} --out-dir {output} > {log} 2>&1"
