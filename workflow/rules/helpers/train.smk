# Training half: one GRPO job per stage in train.stages, and the stage-II selection between stage I and II.
# MLflow: a sqlite store under results/ unless MLFLOW_TRACKING_URI is set (the train CLI gives that precedence).
MLFLOW_URI = f"sqlite:///{Path('results/mlflow.db').resolve()}"


def train_init_model(wildcards):
    init = TRAIN["stages"][wildcards.tstage]["init"]
    return model_dir("policy") if init == "base" else f"results/train/{init}/model"


def train_launcher(gpus, nodes=1):
    """How a GRPO stage starts, from the GPUs per node and the node count Snakemake grants it.

    ``python`` for CPU / one GPU; ``accelerate launch`` with DeepSpeed ZeRO-3 over one node's GPUs; for several
    nodes, ``srun`` starts workflow/scripts/accelerate_node.sh once per node, which reads its rank and the head
    node from SLURM's variables (an mpi=srun job, which the SLURM jobstep does not wrap in srun).
    """
    cfg = Path(workflow.basedir) / "workflow/accelerate/zero3.yaml"
    if nodes > 1:
        script = Path(workflow.basedir) / "workflow/scripts/accelerate_node.sh"
        return f"srun --nodes {nodes} --ntasks {nodes} --ntasks-per-node 1 bash {script} {cfg} {gpus}"
    if gpus <= 1:
        return "python"
    return (
        f"accelerate launch --config_file {cfg} --num_processes {gpus} --num_machines 1"
    )


def train_nodes():
    return TRAIN["nodes"]


def train_data(wildcards):
    return f"results/mixture/{TRAIN['stages'][wildcards.tstage]['data']}.parquet"


def train_data_card(wildcards):
    """What describes a stage's data in MLflow: the mixture's data card, or stage II's selection stats."""
    data = train_data(wildcards)
    return data.replace(
        ".parquet", ".stats.json" if data.endswith("stage2.parquet") else ".card.json"
    )


def select_best_stage():
    return TRAIN["select_best"]


def train_eval_data(wildcards):
    if EVAL and wildcards.tstage == select_best_stage():
        return {"val": "results/eval/validation.parquet"}
    return {}
