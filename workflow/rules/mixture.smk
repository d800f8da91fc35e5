rule build_mixture:
    input:
        unpack(
            lambda wc: {
                f"kc_{k}": v for k, v in mixture_qa_inputs("keychain")(wc).items()
            }
        ),
        unpack(
            lambda wc: {
                f"plain_{k}": v for k, v in mixture_qa_inputs("plain_qa")(wc).items()
            }
        ),
        unpack(mixture_book_inputs),
        retrieval=f"results/retrieval/L{RETRIEVAL_LENGTH}.parquet",
        dapo="results/math/dapo_math.parquet",
        choice="results/math/math_choice.parquet",
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.mixture"),
    output:
        data="results/mixture/{stage}.parquet",
        card_json="results/mixture/{stage}.card.json",
        card_md=report(
            "results/mixture/{stage}.card.md",
            category="Data",
            labels={"stage": "{stage}"},
        ),
    log:
        "logs/mixture/{stage}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=32000,
        runtime="1h",
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
        books=lambda wc: [
            f"--keychain-books={p}" for p in mixture_book_inputs(wc).values()
        ],
        seed=config["seed"],
    shell:
        "python -m loongrl.data.mixture build --stage {wildcards.stage:q} --keychain {params.kc:q} --plain {params.plain:q} "
        "--retrieval {input.retrieval:q} --dapo {input.dapo:q} --math-choice {input.choice:q} {params.books:q} "
        "--tokenizer {input.tokenizer:q} --params {params.cfg:q} --seed {params.seed:q} --output {output.data:q} "
        "--card-json {output.card_json:q} --card-md {output.card_md:q} > {log:q} 2>&1"


rule preflight:
    input:
        mixtures=expand("results/mixture/{stage}.parquet", stage=STAGES),
        code=stage_code("loongrl.data.mixture"),
    output:
        "results/mixture/preflight.json",
    log:
        "logs/mixture/preflight.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        max_tokens=config["mixture"]["max_prompt_tokens"],
    shell:
        "python -m loongrl.data.mixture preflight --inputs {input.mixtures:q} --max-prompt-tokens {params.max_tokens:q} "
        "--output {output:q} > {log:q} 2>&1"


rule download_released:
    output:
        manifest="resources/released/{rconfig}/MANIFEST.json",
    log:
        "logs/released/download_{rconfig}.log",
    retries: 2
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wc: (
            f"https://huggingface.co/datasets/{config['mixture']['released']['repo']}/resolve/"
            f"{config['mixture']['released']['revision']}/{wc.rconfig}/{config['mixture']['released']['file']}"
        ),
        file=config["mixture"]["released"]["file"],
        pin=lambda wc: pin_args(f"mixture.released.sha256.{wc.rconfig}"),
    shell:
        "python -m loongrl.download --dataset released_{wildcards.rconfig:q} --url {params.url:q} "
        '--files {params.file:q} {params.pin:q} --out-dir "$(dirname {output.manifest:q})" > {log:q} 2>&1'


rule released_qa:
    input:
        data=released_input,
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.released"),
    output:
        "results/released/{kind}/{dataset}.parquet",
    log:
        "logs/released/{kind}.{dataset}.log",
    conda:
        "../../envs/data.yaml"
    params:
        src=lambda wc, input: (
            str(Path(input.data).parent / config["mixture"]["released"]["file"])
            if str(input.data).endswith("MANIFEST.json")
            else input.data
        ),
        system=config["mixture"]["system_prompt"],
    shell:
        "python -m loongrl.data.released --input {params.src:q} --kind {wildcards.kind:q} --dataset {wildcards.dataset:q} "
        "--tokenizer {input.tokenizer:q} --system-prompt {params.system:q} --output {output:q} > {log:q} 2>&1"


rule released_fidelity:
    input:
        ours=expand(
            "results/{folder}/{dataset}.L{length}.parquet",
            folder=["keychain", "fill/plain"],
            dataset=DATASETS,
            length=TRAIN_LENGTH,
        ),
        theirs=expand(
            "results/released/{kind}/{dataset}.parquet",
            kind=["keychain", "plain_qa"],
            dataset=DATASETS,
        ),
        code=stage_code("loongrl.data.released"),
    output:
        "results/released/fidelity.md",
    log:
        "logs/released/fidelity.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        ours=lambda wc, input: [
            f"{'plain_qa' if Path(p).parent.name == 'plain' else 'keychain'}:{Path(p).name.split('.')[0]}:{p}"
            for p in input.ours
        ],
        theirs=lambda wc, input: [
            f"{Path(p).parent.name}:{Path(p).stem}:{p}" for p in input.theirs
        ],
    shell:
        "python -m loongrl.data.released fidelity --ours {params.ours:q} --theirs {params.theirs:q} "
        "--output {output:q} > {log:q} 2>&1"
