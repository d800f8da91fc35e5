# Evaluation half: official benchmark files -> task parquet per cell -> one job per model x benchmark x cell.


include: "helpers/eval.smk"


rule download_longbench:
    output:
        manifest="resources/eval/longbench/MANIFEST.json",
    log:
        "logs/eval/download_longbench.log",
    retries: 1
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wc: EVAL["longbench"]["url"],
        files=[f"{t}.jsonl" for t in EVAL["longbench"]["tasks"]],
        pin=pin_args("eval.longbench.sha256"),
    shell:
        "python -m loongrl.download --dataset longbench --url {params.url:q} --files {params.files:q} "
        '{params.pin:q} --out-dir "$(dirname {output.manifest:q})" > {log:q} 2>&1'


rule download_eval_books:
    output:
        directory("resources/eval/books"),
    log:
        "logs/eval/download_books.log",
    retries: 2
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        ids=lambda wc: EVAL["haystack_ids"],
        pin=pin_args("eval.haystack_sha256"),
    shell:
        "python -m loongrl.books download --ids {params.ids:q} {params.pin:q} --out-dir {output:q} > {log:q} 2>&1"


rule download_longbench_v2:
    output:
        manifest="resources/eval/longbench_v2/MANIFEST.json",
    log:
        "logs/eval/download_longbench_v2.log",
    retries: 1
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wc: EVAL["longbench_v2"]["url"],
        pin=pin_args("eval.longbench_v2.sha256"),
    shell:
        "python -m loongrl.download --dataset longbench_v2 --url {params.url:q} --files data.json "
        '{params.pin:q} --out-dir "$(dirname {output.manifest:q})" > {log:q} 2>&1'


rule download_short_eval:
    output:
        manifest="resources/eval/{sbench}/MANIFEST.json",
    log:
        "logs/eval/download_{sbench}.log",
    retries: 1
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wc: EVAL["short"]["downloads"][wc.sbench]["url"],
        files=lambda wc: EVAL["short"]["downloads"][wc.sbench]["files"],
        pin=lambda wc: pin_args(f"eval.short.downloads.{wc.sbench}.sha256"),
    shell:
        "python -m loongrl.download --dataset {wildcards.sbench:q} --url {params.url:q} "
        '--files {params.files:q} {params.pin:q} --out-dir "$(dirname {output.manifest:q})" > {log:q} 2>&1'


rule download_ruler_qa:
    output:
        "resources/eval/ruler_{qa}/{file}",
    log:
        "logs/eval/download_ruler_{qa}_{file}.log",
    retries: 1
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wc: EVAL["ruler"]["qa_downloads"][wc.qa]["url"],
        pin=lambda wc: pin_args(f"eval.ruler.qa_downloads.{wc.qa}.sha256"),
    shell:
        "python -m loongrl.download --dataset ruler_{wildcards.qa:q} --url {params.url:q} "
        '--files {wildcards.file:q} {params.pin:q} --out-dir "$(dirname {output:q})" > {log:q} 2>&1'


rule eval_tasks:
    input:
        data=eval_task_inputs,
        tokenizer=model_dir("policy"),
        code=stage_code("loongrl.eval.tasks"),
    output:
        "results/eval/tasks/{bench}.{cell}.{kind}.parquet",
    log:
        "logs/eval/tasks/{bench}.{cell}.{kind}.log",
    conda:
        "../../envs/data.yaml"
    threads: 8
    resources:
        mem_mb=16000,
        runtime="12h",
    params:
        cfg=lambda wc: eval_task_params(wc.bench),
        src=lambda wc, input: input_dir(input.data[0]),
        length=cell_length,
        seed=config["seed"],
    shell:
        "python -m loongrl.eval.tasks {wildcards.bench:q} --input {params.src:q} --tokenizer {input.tokenizer:q} "
        "--params {params.cfg:q} --length {params.length:q} --cell {wildcards.cell:q} --kind {wildcards.kind:q} "
        "--seed {params.seed:q} --threads {threads} --output {output:q} > {log:q} 2>&1"


# The validation slice stage I's checkpoints are ranked on (train.select_best): LongBench rows (the paper's), or
# new Book-RULER rows from the training books (eval.validation.source: retrieval; the laptop's task, where a 135M
# model scores 0 on LongBench QA and every checkpoint would tie).
if EVAL["validation"]["source"] == "longbench":

    rule eval_validation:
        input:
            data=longbench_inputs(),
            tokenizer=model_dir("policy"),
            code=stage_code("loongrl.eval.tasks"),
        output:
            "results/eval/validation.parquet",
        log:
            "logs/eval/validation.log",
        conda:
            "../../envs/data.yaml"
        params:
            cfg=eval_task_params("longbench"),
            src=lambda wc, input: input_dir(input.data[0]),
            seed=config["seed"],
            # generated inside the training job: its prompts get the training prompts' cap, not LongBench's 120K
            cap=config["mixture"]["max_prompt_tokens"],
        shell:
            "python -m loongrl.eval.tasks validation --input {params.src:q} --tokenizer {input.tokenizer:q} "
            "--params {params.cfg:q} --seed {params.seed:q} --max-input-tokens {params.cap:q} --output {output:q} > {log:q} 2>&1"

else:

    rule retrieval_validation:
        input:
            rows=f"results/retrieval/validation.L{RETRIEVAL_LENGTH}.parquet",
            code=stage_code("loongrl.data.mixture"),
        output:
            "results/eval/validation.parquet",
        log:
            "logs/eval/validation.log",
        localrule: True
        conda:
            "../../envs/data.yaml"
        params:
            system=config["mixture"]["system_prompt"],
        shell:
            "python -m loongrl.data.mixture validation --retrieval {input.rows:q} --system-prompt {params.system:q} "
            "--output {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        model=eval_model_dir,
        checked=ancient("results/check_inputs.json"),  # order only: no GPU job before the inputs suffice
        tasks=eval_task_file,
        books=eval_books_dir(),
        code=stage_code("loongrl.eval.evaluate"),
    output:
        samples="results/eval/{model}/{bench}.{cell}.parquet",
        summary="results/eval/{model}/{bench}.{cell}.summary.json",
    log:
        "logs/eval/{model}/{bench}.{cell}.log",
    benchmark:
        "benchmarks/eval/{model}/{bench}.{cell}.tsv"
    conda:
        "../../envs/filter.yaml"
    threads: 4
    resources:
        gpu=EVAL["gpus"],
        mem_mb=64000,
        runtime="24h",
    params:
        cfg=eval_run_params(),
        decoding=eval_decoding,
        kind=lambda wc: model_kind(EVAL, wc.model).name,
        seed=config["seed"],
    shell:
        "python -m loongrl.eval.evaluate --model {input.model:q} --model-name {wildcards.model:q} --tasks {input.tasks:q} "
        "--params {params.cfg:q} --decoding {params.decoding:q} --kind {params.kind:q} --books {input.books:q} "
        "--gpus {resources.gpu} "
        "--seed {params.seed:q} --samples {output.samples:q} --summary {output.summary:q} > {log:q} 2>&1"


rule judge:
    input:
        samples="results/eval/{model}/{bench}.{cell}.parquet",
        summary="results/eval/{model}/{bench}.{cell}.summary.json",
        tasks=eval_task_file,
        judge=judge_model_input,
        code=stage_code("loongrl.eval.judge"),
    output:
        samples="results/eval/{model}/{bench}.{cell}.judged.parquet",
        summary="results/eval/{model}/{bench}.{cell}.judged.summary.json",
    log:
        "logs/eval/{model}/{bench}.{cell}.judge.log",
    benchmark:
        "benchmarks/eval/{model}/{bench}.{cell}.judge.tsv"
    conda:
        "../../envs/filter.yaml"
    threads: 4
    resources:
        gpu=lambda wc: 0 if EVAL["judge"].get("url") else EVAL["judge"].get("gpus", 1),
        mem_mb=64000,
        runtime="12h",
    params:
        judge=lambda wc: judge_params(),
        model=lambda wc, input: input.judge[0] if input.judge else "",
        seed=config["seed"],
    shell:
        "python -m loongrl.eval.judge --samples {input.samples:q} --summary {input.summary:q} --tasks {input.tasks:q} "
        "--judge {params.judge:q} --model {params.model:q} --gpus {resources.gpu} --seed {params.seed:q} "
        "--out-samples {output.samples:q} --out-summary {output.summary:q} > {log:q} 2>&1"


rule contamination:
    input:
        train=expand("results/raw_qa/{dataset}.parquet", dataset=DATASETS),
        longbench=f"results/eval/tasks/longbench.all.{kinds_in_use(EVAL)[0]}.parquet",
        code=stage_code("loongrl.eval.contamination"),
    output:
        "results/eval/contamination.json",
    log:
        "logs/eval/contamination.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.eval.contamination --train {input.train:q} --longbench {input.longbench:q} "
        "--output {output:q} > {log:q} 2>&1"
