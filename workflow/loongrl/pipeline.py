"""What the Snakefile sees: the whole config validated, every section's checks included.

The core's ``loongrl.config`` validates the schema and the data and training sections; the eval section's checks
belong to the eval half (they read its benchmark registry), and the local-source row counts to the data half
(``data.check_inputs``). This module is the one place that joins them, above
every layer, so that the core never imports a stage package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loongrl import config as core
from loongrl.data.check_inputs import config_errors as input_config_errors
from loongrl.eval.registry import config_errors as eval_config_errors

CHECKS = (eval_config_errors, input_config_errors)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate (and fill the schema's defaults into) a merged config; raise ConfigError naming every bad key."""
    return core.validate_config(config, checks=CHECKS)


def load_config(*paths: str | Path) -> dict[str, Any]:
    """Load, merge in order (as Snakemake merges --configfile overlays) and validate YAML config files."""
    return core.load_config(*paths, checks=CHECKS)
