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
    skip = ("keep_min", "keep_max", "shards")
    return as_json({k: v for k, v in config["filter"].items() if k not in skip})


def filter_fallback_input(wildcards):
    if config["models"]["filter_fallback"]:
        return f"results/filter/{wildcards.dataset}.fallback.parquet"
    return []


def books_dir():
    if config["retrieval"]["source"] == "download":
        return "resources/books"
    return config["retrieval"]["books_dir"]


def math_spec(task):
    """The config entry of a math task (``dapo_math`` -> math.dapo, ``math_choice`` -> math.math_choice)."""
    return config["math"]["dapo" if task == "dapo_math" else "math_choice"]


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


def filter_shards(pattern):
    """Every shard's file of the difficulty filter (``filter.shards`` GPU jobs per dataset)."""

    def files(wildcards):
        return expand(
            pattern, dataset=wildcards.dataset, shard=range(config["filter"]["shards"])
        )

    return files
