# The train keys the memory preflight reads (loongrl.train.memory: the estimate and the stages' schedule): its
# job's params, so that a change to any other key does not rerun the gate in front of every training stage.
PREFLIGHT_KEYS = (
    "assumed_decode_tokens_per_s",
    "assumed_train_tflops",
    "attn_implementation",
    "beta",
    "generation",
    "gpu_memory_gib",
    "gpus",
    "grad_accum_dtype",
    "gradient_checkpointing",
    "job_retries",
    "job_runtime",
    "max_completion_length",
    "memory_margin",
    "nodes",
    "num_generations",
    "per_device_batch",
    "prompts_per_step",
    "save_total_limit",
    "stages",
    "vllm_gpu_memory_utilization",
    "vllm_mode",
    "vllm_sleep_mode",
)


# Training half: one GRPO job per stage in train.stages, and the stage-II selection between stage I and II.
import os

# MLflow: a sqlite store under results/ unless MLFLOW_TRACKING_URI is set (the train CLI gives that precedence).
# Relative to the working directory every job runs in (sqlite:/// + a relative path), never absolute: the URI is a
# rule param, and an absolute one would make a moved checkout retrain every stage ("Params have changed").
MLFLOW_URI = "sqlite:///results/mlflow.db"


def train_init_model(wildcards):
    init = TRAIN["stages"][wildcards.tstage]["init"]
    return model_dir("policy") if init == "base" else f"results/train/{init}/model"


def train_launcher(cpus_per_task=None):
    """How a GRPO stage starts, from train.gpus (per node) and train.nodes, never from the job's ``gpu`` resource
    (a multi-node job asks for its GPUs as a per-node GRES instead, so ``gpu`` is 0 there).

    ``python`` for CPU / one GPU; ``accelerate launch`` with DeepSpeed ZeRO-3 over one node's GPUs; for several
    nodes, ``srun`` starts workflow/scripts/accelerate_node.sh once per node, which reads its rank and the head
    node from SLURM's variables (an mpi=srun job, which the SLURM jobstep does not wrap in srun). The jobstep
    strips SLURM_CPUS_PER_TASK and the like before the job's shell runs, so the inner srun states its CPUs and
    GPUs itself; otherwise each node's task may be bound to a single core.
    """
    gpus, nodes = TRAIN["gpus"], TRAIN["nodes"]
    # relative to the working directory (the jobs run there): the launch line is a rule param, and an absolute path
    # would make a moved checkout retrain every stage
    cfg = os.path.relpath(Path(workflow.basedir) / "workflow/accelerate/zero3.yaml")
    if nodes > 1:
        script = os.path.relpath(
            Path(workflow.basedir) / "workflow/scripts/accelerate_node.sh"
        )
        step = f"srun --nodes {nodes} --ntasks {nodes} --ntasks-per-node 1 --kill-on-bad-exit=1"
        if cpus_per_task:
            step += f" --cpus-per-task {cpus_per_task}"
        if gpus:
            step += f" --gres=gpu:{gpus}"
        return f"{step} bash {script} {cfg} {max(gpus, 1)}"
    if gpus <= 1:
        return "python"
    # port 0: accelerate asks the OS for a free rendezvous port (accelerate/utils/launch.py:407-408). Its default,
    # 29500 (:410-411), moves elsewhere only if the port is already bound when it checks (:474-485), so two stages
    # (or a stage and a test) starting together on one node both take 29500 and one fails to rendezvous
    return f"accelerate launch --config_file {cfg} --num_processes {gpus} --num_machines 1 --main_process_port 0"


def train_resources():
    """The SLURM shape of a GRPO job, per node, from the train section (runtime and memory come from the profile).

    One node: ``gpu`` (+ ``gpu_model``) -> ``--gpus=[type:]N``. Several: ``--nodes=N``, ``--gres=gpu[:type]:G``
    per node, ``--ntasks=N`` (one task per node: SLURM gives every node at least one) and the node's CPUs per
    task. The executor plugin would turn ``tasks`` on a GPU job into ``--ntasks-per-gpu`` unless
    ``tasks_per_gpu`` is 0, and ``gpu_model`` with ``gpu=0`` into ``--gpus=type:0``
    (snakemake_executor_plugin_slurm/submit_string.py:159-168, utils.py:385-406).
    """
    gpus, nodes, kind = TRAIN["gpus"], TRAIN["nodes"], TRAIN["gpu_type"]
    out = {"runtime": TRAIN["job_runtime"]}
    if nodes == 1:
        out["gpu"] = gpus
        if kind and gpus:
            out["gpu_model"] = kind
        return out
    out.update(
        gpu=0,
        nodes=nodes,
        tasks=nodes,
        tasks_per_gpu=0,
        mpi="srun",
        cpus_per_task=max(gpus, 1) * TRAIN["cpus_per_gpu"],
    )
    if gpus:
        out["gres"] = f"gpu:{kind}:{gpus}" if kind else f"gpu:{gpus}"
    return out


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
