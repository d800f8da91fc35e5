"""LoongRL: KeyChain data synthesis, staged GRPO and long-context evaluation as one Snakemake DAG.

Every stage is a module with pure functions and a thin ``python -m loongrl.<stage>`` CLI; stages exchange
parquet files so each one also runs on its own (and loads with ``datasets.load_dataset("parquet", ...)``).
"""

__version__ = "0.1.0"
