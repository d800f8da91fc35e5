rule insert_keychain:
    input:
        filled="results/fill/keychain/{dataset}.L{length}.parquet",
        raw="results/raw_qa/{dataset}.parquet",
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.keychain"),
    output:
        data="results/keychain/{dataset}.L{length}.parquet",
        stats="results/keychain/{dataset}.L{length}.stats.json",
    log:
        "logs/keychain/{dataset}.L{length}.log",
    benchmark:
        "benchmarks/keychain/{dataset}.L{length}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=32000,
        runtime="2h",
    params:
        cfg=as_json(config["keychain"]),
        system=config["mixture"]["system_prompt"],
        seed=config["seed"],
    shell:
        "python -m loongrl.data.keychain --filled {input.filled:q} --raw {input.raw:q} --tokenizer {input.tokenizer:q} "
        "--length {wildcards.length:q} --params {params.cfg:q} --system-prompt {params.system:q} "
        "--seed {params.seed:q} --output {output.data:q} --stats {output.stats:q} > {log:q} 2>&1"


rule build_keychain_books:
    input:
        books=books_dir(),
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.keychain"),
    output:
        data="results/keychain_books/L{length}.parquet",
        stats="results/keychain_books/L{length}.stats.json",
    log:
        "logs/keychain_books/L{length}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime="1h",
    params:
        cfg=as_json(config["keychain"]["books"]),
        examples=config["keychain"]["books"]["examples"],
        system=config["mixture"]["system_prompt"],
        seed=config["seed"],
        heldout=config["retrieval"]["heldout_books"],
    shell:
        "python -m loongrl.data.keychain books --books-dir {input.books:q} --tokenizer {input.tokenizer:q} "
        "--length {wildcards.length:q} --examples {params.examples:q} --params {params.cfg:q} "
        "--system-prompt {params.system:q} --seed {params.seed:q} --exclude-books {params.heldout:q} "
        "--output {output.data:q} --stats {output.stats:q} > {log:q} 2>&1"


rule build_keychain_books_heldout:
    input:
        books=books_dir(),
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.data.keychain"),
    output:
        data="results/keychain_books/heldout.L{length}.parquet",
        stats="results/keychain_books/heldout.L{length}.stats.json",
    log:
        "logs/keychain_books/heldout.L{length}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
        runtime="1h",
    params:
        # the training chains and needles on the held-out books only, with another seed (as build_retrieval_heldout)
        cfg=as_json(config["keychain"]["books"]),
        examples=lambda wc: EVAL["heldout"]["examples"],
        system=config["mixture"]["system_prompt"],
        seed=config["seed"] + 1,
        books=config["retrieval"]["heldout_books"],
    shell:
        "python -m loongrl.data.keychain books --books-dir {input.books:q} --tokenizer {input.tokenizer:q} "
        "--length {wildcards.length:q} --examples {params.examples:q} --params {params.cfg:q} "
        "--system-prompt {params.system:q} --seed {params.seed:q} --only-books {params.books:q} "
        "--output {output.data:q} --stats {output.stats:q} > {log:q} 2>&1"
