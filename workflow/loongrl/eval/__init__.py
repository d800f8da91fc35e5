"""The evaluation half: benchmark task builders, metrics, one job per model x benchmark x cell (``evaluate``) and
the contamination check. ``registry`` is the one table of benchmarks and ``metrics.METRICS`` the one of metrics.

Modules here import only the core, never ``data``, ``train`` or ``report``.
"""
