import re

# Helpers of the evaluation rules: the matrix, inputs and settings of each builder and evaluate job.


def judged(bench):
    """Whether a benchmark's cells go through the LLM judge (eval.judge set, LongBench v1 rows)."""
    return bool(EVAL.get("judge")) and "longbench_qa" in BENCHMARKS[bench].metrics


def eval_summaries():
    """Every cell of the matrix eval models x benchmarks (registry order) x cells; a judged cell's summary is the
    judge stage's (loongrl.eval.judge), which replaces the evaluate job's in the report.
    """
    return [
        f"results/eval/{m}/{b}.{c}.{'judged.' if judged(b) else ''}summary.json"
        for m in EVAL_MODELS
        for b, c in eval_cells(EVAL)
    ]


def model_ref_dir(ref):
    """The local folder of a model reference: a models role, a local folder, or a hub id (downloaded)."""
    if ref in config["models"]:
        return model_dir(ref)
    return ref if Path(ref).is_dir() else f"resources/models/{model_slug(ref)}"


def judge_model_input(wildcards):
    """The judge's model folder when our backend runs it; nothing for an endpoint (eval.judge.url)."""
    j = EVAL["judge"]
    return [] if j.get("url") else [model_ref_dir(j["model"])]


def judge_params():
    """eval.judge with the backend's keys defaulted from eval (one JSON for the stage)."""
    j = dict(EVAL["judge"])
    j.setdefault("backend", EVAL["backend"])
    # a role names the model it stands for: the verdict cache is keyed by the model, not by the role
    j["model"] = config["models"].get(j["model"], j["model"])
    return as_json(j)


def eval_model_dir(wildcards):
    """base: the policy's starting model; a stage: its final model; an extra model: a local folder or a hub id."""
    if wildcards.model == "base":
        return model_dir("policy")
    if wildcards.model in EXTRA_MODELS:
        ref = EXTRA_MODELS[wildcards.model]
        return ref if Path(ref).is_dir() else f"resources/models/{model_slug(ref)}"
    return f"results/train/{wildcards.model}/model"


def eval_books_dir():
    """The folder NIAH / RULER haystacks (and IFEval's Punkt model) read: its own downloaded books, or the local
    folder (where eval.registry.haystack_books names the books training never sees)."""
    if config["retrieval"]["source"] == "download":
        return "resources/eval/books"
    return EVAL["books_dir"]


def ruler_qa_files():
    r = EVAL["ruler"]
    wanted = [t for t in r["tasks"] if t.startswith("qa_")]
    if r["qa_source"] == "download":
        return {
            t: f"resources/eval/ruler_{t}/{r['qa_downloads'][t]['file']}"
            for t in wanted
        }
    return {t: r["qa_local"][t] for t in wanted}


def input_dir(path):
    """The folder a builder reads: a download's folder (given its MANIFEST.json) or the local folder itself."""
    return str(Path(path).parent) if str(path).endswith("MANIFEST.json") else str(path)


def longbench_inputs():
    if EVAL["longbench"]["source"] == "download":
        return ["resources/eval/longbench/MANIFEST.json"]
    return [EVAL["longbench"]["local_dir"]]


def eval_task_inputs(wildcards):
    """The files a benchmark's builder reads, by the registry's ``data`` kind."""
    bench = BENCHMARKS[wildcards.bench]
    if bench.data == "longbench":
        return longbench_inputs()
    if bench.data == "longbench_v2":
        lb2 = EVAL["longbench_v2"]
        if lb2["source"] == "download":
            return ["resources/eval/longbench_v2/MANIFEST.json"]
        return [lb2["local_file"]]
    if bench.data == "heldout":
        return [f"results/retrieval/heldout.L{cell_length(wildcards)}.parquet"]
    if bench.data == "heldout_keychain":
        return [f"results/keychain_books/heldout.L{cell_length(wildcards)}.parquet"]
    if bench.data == "books":
        qa = ruler_qa_files().values() if "ruler" in bench.settings else []
        return [eval_books_dir(), *qa]
    if EVAL["short"]["source"] == "download":
        return [f"resources/eval/{bench.name}/MANIFEST.json"]
    return [EVAL["short"]["local"][bench.name]]


def eval_task_params(b):
    """The eval settings the builder of benchmark ``b`` reads, and only those (adding a model reruns no builder)."""
    out = {"system_prompt": EVAL["system_prompt"]}
    out.update({k: EVAL[k] for k in BENCHMARKS[b].settings})
    if BENCHMARKS[b].data == "books":
        out["haystack_books"] = haystack_books(config)
    if "ruler" in out:
        out["ruler"] = {**EVAL["ruler"], "qa_files": ruler_qa_files()}
    if "validation" in out and out["validation"]["source"] == "longbench":
        # the LongBench builder reads tasks / rows_per_task / holdout; the retrieval slice's keys (and the default
        # source, which older configs lack) must not rerun a paper-scale LongBench cell
        skip = ("source", "retrieval_rows")
        out["validation"] = {
            k: v for k, v in out["validation"].items() if k not in skip
        }
    return as_json(out)


def eval_run_params():
    """The engine settings of an evaluate job (backend, memory, batch size, YaRN)."""
    keys = [
        "backend",
        "gpu_memory_utilization",
        "enforce_eager",
        "batch_size",
        "yarn",
        "past_native",
    ]
    return as_json({k: EVAL[k] for k in keys})


def eval_decoding(wildcards):
    """The decoding of a cell: the shared eval.decoding as the model's kind runs it, with the benchmark's cap and
    overrides (registry)."""
    return as_json(
        BENCHMARKS[wildcards.bench].decoding(EVAL, model_kind(EVAL, wildcards.model))
    )


def eval_task_file(wildcards):
    """The task file a model's cell reads: the rows built for its kind (prompt, prefill; loongrl.eval.kinds)."""
    kind = model_kind(EVAL, wildcards.model).name
    return f"results/eval/tasks/{wildcards.bench}.{wildcards.cell}.{kind}.parquet"


def cell_length(wildcards):
    """The context length of an ``L<n>`` cell, 0 for any other cell."""
    m = re.fullmatch(r"L(\d+)", wildcards.cell)
    return int(m.group(1)) if m else 0
