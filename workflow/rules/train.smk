include: "helpers/train.smk"


rule memory_preflight:
    input:
        model=model_dir("policy"),
    output:
        "results/train/memory_preflight.json",
    log:
        "logs/train/memory_preflight.log",
    localrule: True
    conda:
        "../../envs/train.yaml"
    params:
        cfg=as_json(TRAIN),
        prompt_tokens=config["mixture"]["max_prompt_tokens"],
    shell:
        "python -m loongrl.train.memory --model {input.model} --params {params.cfg:q} "
        "--prompt-tokens {params.prompt_tokens} --output {output} > {log} 2>&1"


rule train_stage:
    input:
        unpack(train_eval_data),
        memory=ancient("results/train/memory_preflight.json"),
        model=train_init_model,
        data=train_data,
    output:
        model=directory("results/train/{tstage}/model"),
        metrics="results/train/{tstage}/metrics.jsonl",
        summary="results/train/{tstage}/summary.json",
    log:
        "logs/train/{tstage}.log",
    benchmark:
        "benchmarks/train/{tstage}.tsv"
    retries: TRAIN["job_retries"]
    conda:
        "../../envs/train.yaml"
    threads: 4
    resources:
        **train_resources(),
        mem_mb=64000,
    params:
        cfg=as_json(TRAIN),
        steps=lambda wc: TRAIN["stages"][wc.tstage]["steps"],
        work="resources/work/train/{tstage}",
        launch=lambda wc, resources: train_launcher(resources.get("cpus_per_task")),
        # the device: one node, the GPUs Snakemake granted (0 under the local CPU profiles); several, the GRES
        gpus=lambda wc, resources: (
            TRAIN["gpus"] * TRAIN["nodes"] if TRAIN["nodes"] > 1 else resources.gpu
        ),
        world=max(1, TRAIN["gpus"]) * TRAIN["nodes"],
        uri=MLFLOW_URI,
        seed=config["seed"],
        card=train_data_card,
        val=lambda wc, input: (
            f"--eval-data {input.val}" if "val" in input.keys() else ""
        ),
    shell:
        "{params.launch} -m loongrl.train.grpo --model {input.model} --data {input.data} --params {params.cfg:q} "
        "--steps {params.steps} --work-dir {params.work} --output {output.model} --metrics {output.metrics} "
        "--summary {output.summary} --gpus {params.gpus} --world {params.world} --seed {params.seed} --mlflow-uri {params.uri:q} "
        "--run-name {wildcards.tstage} {params.val} "
        "--artifact {input.data} --artifact {params.card} > {log} 2>&1"


rule stage2_rollouts:
    input:
        model="results/train/stage1/model",
        data="results/mixture/stage1.parquet",
    output:
        "results/mixture/stage2_shards/{shard}.solved.parquet",
    log:
        "logs/train/stage2_rollouts.{shard}.log",
    benchmark:
        "benchmarks/train/stage2_rollouts.{shard}.tsv"
    conda:
        "../../envs/filter.yaml"
    threads: 4
    resources:
        gpu=TRAIN["gpus"],
        runtime="12h",
        mem_mb=64000,
    params:
        cfg=as_json(TRAIN),
        n=TRAIN["stage2_rollouts"],
        backend=TRAIN["stage2_backend"],
        shards=TRAIN["stage2_shards"],
        seed=config["seed"],
    shell:
        "python -m loongrl.train.stage2 count --model {input.model} --data {input.data} --params {params.cfg:q} "
        "--backend {params.backend} --n {params.n} --shard {wildcards.shard} --shards {params.shards} "
        "--gpus {resources.gpu} --seed {params.seed} --output {output} > {log} 2>&1"


rule select_stage2:
    input:
        data="results/mixture/stage1.parquet",
        counts=expand(
            "results/mixture/stage2_shards/{shard}.solved.parquet",
            shard=range(TRAIN["stage2_shards"]),
        ),
    output:
        data="results/mixture/stage2.parquet",
        stats="results/mixture/stage2.stats.json",
    log:
        "logs/train/select_stage2.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m loongrl.train.stage2 select --data {input.data} {input.counts} --output {output.data} "
        "--stats {output.stats} > {log} 2>&1"
