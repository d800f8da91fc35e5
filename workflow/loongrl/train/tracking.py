"""MLflow tracking of a GRPO stage: one run per stage, reopened when a killed stage resumes.

transformers' MLflow callback logs params and per-step metrics into the run opened here; at the end the stage's
data card, its metrics log and the resolved config (all overlays merged) are stored as artifacts.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


def start_tracking(tracking: dict[str, Any], resuming: bool):
    """Open (or, when resuming, reopen) the stage's MLflow run; transformers' callback logs into it."""
    import mlflow

    mlflow.set_tracking_uri(tracking["uri"])
    mlflow.set_experiment(tracking["experiment"])
    runs = (
        mlflow.search_runs(
            filter_string=f"tags.mlflow.runName = '{tracking['run_name']}'", max_results=1, output_format="list"
        )
        if resuming
        else []
    )
    run = mlflow.start_run(run_id=runs[0].info.run_id) if runs else mlflow.start_run(run_name=tracking["run_name"])
    mlflow.set_tags(tracking.get("tags", {}))
    os.environ["MLFLOW_TRACKING_URI"] = tracking["uri"]
    os.environ["MLFLOW_EXPERIMENT_NAME"] = tracking["experiment"]
    return run


def finish_tracking(tracking: dict[str, Any], metrics_path: Path) -> str:
    import mlflow

    run = mlflow.active_run()
    resolved = os.environ.get("LOONGRL_CONFIG_FILE")
    for path in [*tracking.get("artifacts", []), metrics_path, *([resolved] if resolved else [])]:
        if Path(path).exists():
            mlflow.log_artifact(str(path))
    mlflow.end_run()
    return run.info.run_id


def git_commit() -> str:
    """The checkout's commit, for run tags (kept out of rule params so a new commit does not retrain)."""
    res = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, check=False
    )
    return res.stdout.strip() or "unknown"


def log_mlflow_metrics(values: dict[str, float], step: int) -> None:
    """Log metrics to the active MLflow run, if there is one."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics(values, step=step)
