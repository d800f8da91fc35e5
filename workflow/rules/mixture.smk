def mixture_qa_inputs(kind):
    folder = "keychain" if kind == "keychain" else "fill/plain"

    def inner(wildcards):
        if kind in mixture_exclude(wildcards.stage):
            return {}
        return {
            ds: f"results/{folder}/{ds}.L{TRAIN_LENGTH}.parquet"
            for ds, n in config["mixture"]["counts"][kind].items()
            if n
        }

    return inner


def pairs(mapping):
    return " ".join(f"{k}={v}" for k, v in sorted(mapping.items()))


rule build_mixture:
    input:
        unpack(lambda wc: {f"kc_{k}": v for k, v in mixture_qa_inputs("keychain")(wc).items()}),
        unpack(lambda wc: {f"plain_{k}": v for k, v in mixture_qa_inputs("plain_qa")(wc).items()}),
        retrieval=f"results/retrieval/L{TRAIN_LENGTH}.parquet",
        dapo="results/math/dapo_math.parquet",
        choice="results/math/math_choice.parquet",
        tokenizer=model_dir("policy"),
    output:
        data="results/mixture/{stage}.parquet",
        card_json="results/mixture/{stage}.card.json",
        card_md=report("results/mixture/{stage}.card.md", category="Data", labels={"stage": "{stage}"}),
    log:
        "logs/mixture/{stage}.log",
    params:
        cfg=lambda wc: as_json(
            {
                "counts": config["mixture"]["counts"],
                "exclude": mixture_exclude(wc.stage),
                "system_prompt": config["mixture"]["system_prompt"],
            }
        ),
        kc=lambda wc: pairs(mixture_qa_inputs("keychain")(wc)),
        plain=lambda wc: pairs(mixture_qa_inputs("plain_qa")(wc)),
        seed=config["seed"],
    resources:
        mem_mb=32000,
        runtime="1h",
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.mixture build --stage {wildcards.stage} --keychain {params.kc} --plain {params.plain} "
        "--retrieval {input.retrieval} --dapo {input.dapo} --math-choice {input.choice} "
        "--tokenizer {input.tokenizer} --params {params.cfg:q} --seed {params.seed} --output {output.data} "
        "--card-json {output.card_json} --card-md {output.card_md} > {log} 2>&1"


rule preflight:
    input:
        expand("results/mixture/{stage}.parquet", stage=STAGES),
    output:
        "results/mixture/preflight.json",
    log:
        "logs/mixture/preflight.log",
    params:
        max_tokens=config["mixture"]["max_prompt_tokens"],
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.mixture preflight --inputs {input} --max-prompt-tokens {params.max_tokens} "
        "--output {output} > {log} 2>&1"
