rule download_books:
    output:
        directory("resources/books"),
    log:
        "logs/retrieval/download_books.log",
    retries: 2
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        ids=lambda wc: config["retrieval"]["gutenberg_ids"],
        pin=pin_args("retrieval.gutenberg_sha256"),
    shell:
        "python -m loongrl.books download --ids {params.ids:q} {params.pin:q} --out-dir {output:q} > {log:q} 2>&1"


rule build_retrieval:
    input:
        books=books_dir(),
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.retrieval"),
    output:
        "results/retrieval/L{length}.parquet",
    log:
        "logs/retrieval/L{length}.log",
    benchmark:
        "benchmarks/retrieval/L{length}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime="1h",
    params:
        cfg=as_json(config["retrieval"]),
        reserve=config["fill"]["generation_reserve"],
        system=config["mixture"]["system_prompt"],
        seed=config["seed"],
        heldout=config["retrieval"]["heldout_books"],
    shell:
        "python -m loongrl.data.retrieval --books-dir {input.books:q} --tokenizer {input.tokenizer:q} "
        "--length {wildcards.length:q} --reserve {params.reserve:q} --params {params.cfg:q} "
        "--system-prompt {params.system:q} --seed {params.seed:q} --exclude-books {params.heldout:q} "
        "--output {output:q} > {log:q} 2>&1"


rule build_retrieval_heldout:
    input:
        books=books_dir(),
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.retrieval"),
    output:
        "results/retrieval/heldout.L{length}.parquet",
    log:
        "logs/retrieval/heldout.L{length}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime="1h",
    params:
        # the training task's needles (retrieval.multikey.keys) on the held-out books only, with another seed
        cfg=lambda wc: as_json(
            {
                **config["retrieval"],
                "multikey": {
                    "examples": EVAL["heldout"]["examples"],
                    "keys": config["retrieval"]["multikey"]["keys"],
                },
                "multivalue": {"examples": 0, "values": 1},
            }
        ),
        reserve=lambda wc: EVAL["heldout"]["max_new_tokens"],
        system=config["mixture"]["system_prompt"],
        seed=config["seed"] + 1,
        books=config["retrieval"]["heldout_books"],
    shell:
        "python -m loongrl.data.retrieval --books-dir {input.books:q} --tokenizer {input.tokenizer:q} "
        "--length {wildcards.length:q} --reserve {params.reserve:q} --params {params.cfg:q} "
        "--system-prompt {params.system:q} --seed {params.seed:q} --only-books {params.books:q} "
        "--output {output:q} > {log:q} 2>&1"


rule build_retrieval_validation:
    input:
        books=books_dir(),
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.retrieval"),
    output:
        "results/retrieval/validation.L{length}.parquet",
    log:
        "logs/retrieval/validation.L{length}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime="1h",
    params:
        # the training task's needles on the training books (never the held-out ones), with a third seed: new
        # needles, keys and stretches, so the slice measures the policy on rows it was not trained on
        cfg=lambda wc: as_json(
            {
                **config["retrieval"],
                "multikey": {
                    "examples": EVAL["validation"]["retrieval_rows"],
                    "keys": config["retrieval"]["multikey"]["keys"],
                },
                "multivalue": {"examples": 0, "values": 1},
            }
        ),
        reserve=config["fill"]["generation_reserve"],
        system=config["mixture"]["system_prompt"],
        seed=config["seed"] + 2,
        heldout=config["retrieval"]["heldout_books"],
    shell:
        "python -m loongrl.data.retrieval --books-dir {input.books:q} --tokenizer {input.tokenizer:q} "
        "--length {wildcards.length:q} --reserve {params.reserve:q} --params {params.cfg:q} "
        "--system-prompt {params.system:q} --seed {params.seed:q} --exclude-books {params.heldout:q} "
        "--output {output:q} > {log:q} 2>&1"
