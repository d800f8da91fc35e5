# Helpers of the data-half rules (raw_qa, filter, split, retrieval, math, mixture): input functions.


def raw_qa_inputs(wildcards):
    if config["raw_qa"]["source"] == "download":
        return f"resources/raw/{wildcards.dataset}/MANIFEST.json"
    spec = config["raw_qa"]["local_files"][wildcards.dataset]
    folder = Path(config["raw_qa"]["local_dir"]) / spec["folder"]
    return sorted(str(p) for pat in spec["files"] for p in folder.glob(pat))


def raw_qa_patterns(wildcards):
    raw = config["raw_qa"]
    section = "downloads" if raw["source"] == "download" else "local_files"
    return raw[section][wildcards.dataset]["files"]


def filter_gpus():
    """GPUs for a filter job: vLLM's tensor-parallel size; the transformers backend uses at most one."""
    f = config["filter"]
    return f["tensor_parallel_size"] if f["backend"] == "vllm" else 1


def filter_engine_params():
    """The filter settings a sampling job reads: not the keep band or the shard count, so changing those
    re-runs no GPU job (the band is applied by split; the shards are the job's wildcard).
    """
    skip = ("keep_min", "keep_max", "shards", "budget", "margin", "keep_rates")
    return as_json({k: v for k, v in config["filter"].items() if k not in skip})


def filter_fallback_input(wildcards):
    if config["models"]["filter_fallback"]:
        return f"results/filter/{wildcards.dataset}.fallback.parquet"
    return []


def books_dir():
    if config["retrieval"]["source"] == "download":
        return "resources/books"
    return config["retrieval"]["books_dir"]


def math_key(task):
    """The config key of a math task (``dapo_math`` -> math.dapo, ``math_choice`` -> math.math_choice)."""
    return "dapo" if task == "dapo_math" else "math_choice"


def math_spec(task):
    return config["math"][math_key(task)]


def math_input(task):
    if config["math"]["source"] == "download":
        return f"resources/math/{task}/MANIFEST.json"
    return math_spec(task)["local_file"]


def math_file(task):
    """The file math_data reads: the downloaded file next to its manifest, or the local file."""
    if config["math"]["source"] == "download":
        return f"resources/math/{task}/{math_spec(task)['file']}"
    return math_spec(task)["local_file"]


def mixture_exclude(stage):
    return config["mixture"]["stages"][stage]["exclude"]


def mixture_book_inputs(wildcards):
    """The KeyChain-over-books rows (both Table 4 arms read one file), where the stage's mixture takes either arm."""
    counts = config["mixture"]["counts"]
    arms = [
        a
        for a in ("keychain_books", "direct_books")
        if counts[a] and a not in mixture_exclude(wildcards.stage)
    ]
    return (
        {"keychain_books": f"results/keychain_books/L{RETRIEVAL_LENGTH}.parquet"}
        if arms
        else {}
    )


def mixture_qa_inputs(kind):
    """The QA rows a stage's mixture takes: our KeyChain / fill outputs at the training length, or the authors'
    released rows (``mixture.qa_source: released``: no filter and no synthesis for the QA part).
    """
    folder = "keychain" if kind == "keychain" else "fill/plain"

    def path(ds):
        if RELEASED:
            return f"results/released/{kind}/{ds}.parquet"
        return f"results/{folder}/{ds}.L{TRAIN_LENGTH}.parquet"

    def inner(wildcards):
        if kind in mixture_exclude(wildcards.stage):
            return {}
        return {
            ds: path(ds) for ds, n in config["mixture"]["counts"][kind].items() if n
        }

    return inner


def released_input(wildcards):
    """One released config's parquet: downloaded (its MANIFEST.json) or under mixture.released.local_dir."""
    rel = config["mixture"]["released"]
    name = RELEASED_CONFIGS[(wildcards.kind, wildcards.dataset)]
    if rel["local_dir"]:
        return f"{rel['local_dir']}/{name}/{rel['file']}"
    return f"resources/released/{name}/MANIFEST.json"


def filter_plan(dataset):
    """What the sized filter needs of a dataset: the split's questions in the keep band, at the expected keep rate."""
    f, sp = config["filter"], config["split"]
    return {
        "need": sp["plain_questions"] + sp["keychain_questions"],
        "keep_rate": f["keep_rates"].get(dataset, f["default_keep_rate"]),
        "margin": f["margin"],
        "chunk_size": f["chunk_questions"],
        "keep_min": f["keep_min"],
        "keep_max": f["keep_max"],
    }


def filter_select(wildcards):
    """Which questions a filter job samples: a block of the file (budget all) or a chunk of the seeded order."""
    f = config["filter"]
    if f["budget"] == "all":
        return ["--shard", wildcards.shard, "--shards", str(f["shards"])]
    return ["--chunk", wildcards.shard, "--chunk-size", str(f["chunk_questions"])]


def round_chunks(wildcards):
    """The chunk files a round job counts: every chunk up to the round's end (the first round's from the need, a
    later one's from the previous round's record)."""
    r = int(wildcards.round)
    if r == 1:
        p = filter_plan(wildcards.dataset)
        end = first_round(p["need"], p["keep_rate"], p["margin"], p["chunk_size"])
    else:
        prev = checkpoints.filter_round.get(dataset=wildcards.dataset, round=r - 1)
        end = json.loads(Path(prev.output[0]).read_text())["next_end"]
    return expand(
        "results/filter/shards/{dataset}.{shard}.passes.parquet",
        dataset=wildcards.dataset,
        shard=range(end),
    )


def filter_shards(pattern):
    """Every filter job's file of a dataset: ``filter.shards`` blocks (budget all), or the chunks of every round
    until a round's record says the need is met (budget auto: a Snakemake checkpoint per round).
    """

    def files(wildcards):
        f = config["filter"]
        if f["budget"] == "all":
            return expand(pattern, dataset=wildcards.dataset, shard=range(f["shards"]))
        r = 1
        while True:
            done = checkpoints.filter_round.get(dataset=wildcards.dataset, round=r)
            state = json.loads(Path(done.output[0]).read_text())
            if state["done"]:
                return expand(
                    pattern, dataset=wildcards.dataset, shard=range(state["end"])
                )
            r += 1

    return files


def check_inputs_config():
    """Only the values the input check reads (loongrl.data.check_inputs): the job is the gate of every GPU job
    and sits upstream of the filter's checkpoint, so rerunning it defers every job behind that checkpoint in a
    dry run. A change to a key it does not read (fill.placement, mixture proportions of QA) must not rerun it,
    or `snakemake -n` would show it alone and hide the real reruns."""
    ret = config["retrieval"]
    return {
        "split": {
            k: config["split"][k] for k in ("plain_questions", "keychain_questions")
        },
        "mixture": {
            "counts": {
                t: config["mixture"]["counts"][t] for t in ("dapo_math", "math_choice")
            }
        },
        "retrieval": {
            "multikey": {"examples": ret["multikey"]["examples"]},
            "multivalue": {"examples": ret["multivalue"]["examples"]},
            "length": ret.get("length"),
        },
        "fill": {"train_length": config["fill"]["train_length"]},
        "filter": config["filter"],
    }
