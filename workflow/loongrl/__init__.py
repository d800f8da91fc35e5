"""LoongRL: KeyChain data synthesis, staged GRPO and long-context evaluation as one Snakemake DAG.

The package tree is the pipeline. Top-level modules are the core (io, cli, config, schemas, prompts, rng, books,
download, models, inference, answers, verifiers). ``data``, ``train`` and ``eval`` import only the core; ``report``
imports ``eval`` and the core; ``pipeline`` (the Snakefile's config validation) sits above them all. Every stage is
a module of pure functions with a thin ``python -m loongrl.<half>.<stage>`` CLI; stages exchange parquet files, so
each also runs on its own (and loads with ``datasets.load_dataset("parquet", ...)``).
"""

__version__ = "0.1.0"
