"""The training half: staged GRPO on TRL (``grpo``), its reward families (``rewards``), MLflow tracking
(``tracking``) and the stage-II selection of not-yet-mastered examples (``stage2``).

Modules here import only the core, never ``data``, ``eval`` or ``report``: stages meet through parquet files.
"""
