"""The report: our numbers beside the paper's tables (``tables``) and the figures (``figures``).

The last layer: it reads the eval half's registry and summaries and the core; nothing imports it.
"""
