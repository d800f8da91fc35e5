include: "helpers/train.smk"


rule memory_preflight:
    input:
        model=model_dir("policy"),
        mixtures=expand("results/mixture/{stage}.parquet", stage=STAGES),
        code=stage_code("loongrl.train.memory"),
    output:
        "results/train/memory_preflight.json",
    log:
        "logs/train/memory_preflight.log",
    localrule: True
    conda:
        "../../envs/train.yaml"
    params:
        # only the keys the preflight reads: another key must not rerun the gate
        cfg=as_json({k: TRAIN.get(k) for k in PREFLIGHT_KEYS}),
        prompt_tokens=config["mixture"]["max_prompt_tokens"],
        mixtures=lambda wc, input: [f"{s}={p}" for s, p in zip(STAGES, input.mixtures)],
    shell:
        "python -m loongrl.train.memory --model {input.model:q} --params {params.cfg:q} "
        "--prompt-tokens {params.prompt_tokens:q} --mixture {params.mixtures:q} --output {output:q} > {log:q} 2>&1"


rule train_stage:
    input:
        unpack(train_eval_data),
        # A plain input, not ancient(): when the preflight reruns, Snakemake 9.27 first masks every job downstream of
        # it without reading their own reasons, then follows only non-ancient edges from it (snakemake/dag.py:1636-
        # 1642, 1663-1667; snakemake/snakemake#4166), so a stage with its own reason (missing output after a failed
        # run, changed params) would silently not run in that invocation: it ran only the preflight and reported
        # done. Nothing is retrained for it: whatever reruns the preflight (a train key it reads, the mixtures, the
        # model, train/memory.py, which grpo imports) reruns the stage anyway.
        memory="results/train/memory_preflight.json",
        model=train_init_model,
        data=train_data,
        code=stage_code("loongrl.train.grpo"),
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
            ["--eval-data", input.val] if "val" in input.keys() else []
        ),
    shell:
        "{params.launch} -m loongrl.train.grpo --model {input.model:q} --data {input.data:q} --params {params.cfg:q} "
        "--steps {params.steps:q} --work-dir {params.work:q} --output {output.model:q} --metrics {output.metrics:q} "
        "--summary {output.summary:q} --gpus {params.gpus:q} --world {params.world:q} --seed {params.seed:q} --mlflow-uri {params.uri:q} "
        "--run-name {wildcards.tstage:q} {params.val:q} "
        "--artifact {input.data:q} --artifact {params.card:q} > {log:q} 2>&1"


rule stage2_rollouts:
    input:
        model="results/train/stage1/model",
        data="results/mixture/stage1.parquet",
        code=stage_code("loongrl.train.stage2"),
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
        gpu=TRAIN["stage2_gpus"],
        runtime="12h",
        mem_mb=64000,
    params:
        cfg=as_json(TRAIN),
        n=TRAIN["stage2_rollouts"],
        backend=TRAIN["stage2_backend"],
        shards=TRAIN["stage2_shards"],
        seed=config["seed"],
    shell:
        "python -m loongrl.train.stage2 count --model {input.model:q} --data {input.data:q} --params {params.cfg:q} "
        "--backend {params.backend:q} --n {params.n:q} --shard {wildcards.shard:q} --shards {params.shards:q} "
        "--gpus {resources.gpu} --seed {params.seed:q} --output {output:q} > {log:q} 2>&1"


rule select_stage2:
    input:
        data="results/mixture/stage1.parquet",
        counts=expand(
            "results/mixture/stage2_shards/{shard}.solved.parquet",
            shard=range(TRAIN["stage2_shards"]),
        ),
        code=stage_code("loongrl.train.stage2"),
    output:
        data="results/mixture/stage2.parquet",
        stats="results/mixture/stage2.stats.json",
    log:
        "logs/train/select_stage2.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        keep=TRAIN["stage2_keep"],
    shell:
        "python -m loongrl.train.stage2 select --data {input.data:q} {input.counts:q} --output {output.data:q} "
        "--stats {output.stats:q} --keep {params.keep:q} > {log:q} 2>&1"
