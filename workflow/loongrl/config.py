"""Config loading and validation.

The JSON schema (workflow/schemas/config.schema.yaml) catches wrong keys and types and holds the one default of
every optional key (filled in here, so rules and modules index the config without defaults of their own);
``check_semantics`` catches combinations a schema cannot express (a keep band wider than n, a training length that
is not built, ...). Checks of other sections are passed in by the layer that owns them (``loongrl.pipeline`` adds
the eval section's). Every message names the dotted key so a user can find the line in config.yaml.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """Invalid configuration; the message names every offending key."""


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def fill_defaults(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set every absent optional key that has a ``default`` in the schema, in place (nested objects included).

    Only objects that are present get their defaults: an absent ``train`` or ``eval`` section stays absent.
    """
    schema = schema or _schema()

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return node

    def walk(value: Any, node: dict[str, Any]) -> None:
        node = resolve(node)
        if not isinstance(value, dict):
            return
        props = node.get("properties", {})
        for key, sub in props.items():
            # a default beside a $ref ({$ref: posint, default: 3}) is the property's own: read it before resolving
            own = sub
            sub = resolve(sub)
            default = own if "default" in own else sub
            if key not in value and "default" in default:
                value[key] = copy.deepcopy(default["default"])
            if key in value:
                walk(value[key], sub)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    walk(item, extra)

    walk(config, schema)
    return config


def schema_errors(config: dict[str, Any]) -> list[str]:
    """Every schema violation as ``config key 'a.b': message``."""
    validator = jsonschema.Draft202012Validator(_schema())
    messages = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        key = _dotted(err.absolute_path)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            for name in extra:
                full = f"{key}.{name}" if err.absolute_path else name
                messages.append(f"config key '{full}': unknown key (allowed: {sorted(err.schema['properties'])})")
            continue
        messages.append(f"config key '{key}': {err.message}")
    return messages


def check_semantics(config: dict[str, Any]) -> list[str]:
    """Cross-key checks the schema cannot express."""
    msgs = []
    f = config["filter"]
    if not f["keep_min"] <= f["keep_max"] <= f["n"]:
        msgs.append(
            f"config key 'filter.keep_max': keep band [{f['keep_min']}, {f['keep_max']}] must satisfy "
            f"keep_min <= keep_max <= filter.n ({f['n']})"
        )
    if f.get("budget") == "auto" and config["models"].get("filter_fallback"):
        msgs.append(
            "config key 'filter.budget': auto filters a subset, but models.filter_fallback re-runs the 0-correct "
            "questions of every question: set filter.budget: all to use the fallback"
        )
    fill = config["fill"]
    if fill["train_length"] not in fill["lengths"]:
        msgs.append(f"config key 'fill.train_length': {fill['train_length']} is not in fill.lengths {fill['lengths']}")
    for length in fill["lengths"]:
        if length <= fill["generation_reserve"]:
            msgs.append(f"config key 'fill.lengths': {length} leaves no room after generation_reserve")
    datasets = set(config["raw_qa"]["datasets"])
    for kind in ("keychain", "plain_qa"):
        for ds, count in config["mixture"]["counts"][kind].items():
            if ds not in datasets and count:
                msgs.append(f"config key 'mixture.counts.{kind}.{ds}': dataset not in raw_qa.datasets")
    split_key = {"keychain": "keychain_questions", "plain_qa": "plain_questions"}
    for kind, key in split_key.items():
        for ds, count in config["mixture"]["counts"][kind].items():
            if count > config["split"][key]:
                msgs.append(
                    f"config key 'mixture.counts.{kind}.{ds}': {count} rows asked but split.{key} is "
                    f"{config['split'][key]}"
                )
    raw = config["raw_qa"]
    section = "downloads" if raw["source"] == "download" else "local_files"
    for ds in raw["datasets"]:
        if ds not in raw.get(section, {}):
            msgs.append(f"config key 'raw_qa.{section}.{ds}': missing for raw_qa.source={raw['source']}")
    if raw["source"] == "local" and "local_dir" not in raw:
        msgs.append("config key 'raw_qa.local_dir': required when raw_qa.source is 'local'")
    if config["retrieval"]["source"] == "local" and "books_dir" not in config["retrieval"]:
        msgs.append("config key 'retrieval.books_dir': required when retrieval.source is 'local'")
    for name in ("dapo", "math_choice"):
        wants = ["local_file"] if config["math"]["source"] == "local" else ["url", "file"]
        for want in wants:
            if want not in config["math"][name]:
                msgs.append(
                    f"config key 'math.{name}.{want}': required when math.source is '{config['math']['source']}'"
                )
    train = config.get("train")
    if train:
        stages = train["stages"]
        for name, st in stages.items():
            if st["init"] != "base" and st["init"] not in stages:
                msgs.append(f"config key 'train.stages.{name}.init': '{st['init']}' is not base or a training stage")
            if st["init"] == name:
                msgs.append(f"config key 'train.stages.{name}.init': a stage cannot start from itself")
            if st["data"] != "stage2" and st["data"] not in config["mixture"]["stages"]:
                msgs.append(f"config key 'train.stages.{name}.data': '{st['data']}' is not a mixture stage")
        best = train["select_best"]
        if best and best not in stages:
            msgs.append(f"config key 'train.select_best': '{best}' is not a train.stages name")
        if best and not config.get("eval"):
            msgs.append("config key 'train.select_best': needs the eval section (its validation slice)")
        if "stage2" in stages and "stage1" not in config["mixture"]["stages"]:
            msgs.append("config key 'train.stages.stage2': stage II selects from the stage1 mixture, which is missing")
    return msgs


def drop_null_stages(config: dict[str, Any]) -> dict[str, Any]:
    """Remove ``train.stages`` / ``mixture.stages`` entries set to null: how an overlay drops a stage (the 14B
    preset's warm-up; the nano profile's),
    since Snakemake merges config mappings key by key and cannot delete one otherwise."""
    for section in ("train", "mixture"):
        stages = (config.get(section) or {}).get("stages")
        if isinstance(stages, dict):
            for name in [k for k, v in stages.items() if v is None]:
                del stages[name]
    return config


Check = Callable[[dict[str, Any]], list[str]]


def validate_config(config: dict[str, Any], *, checks: Sequence[Check] = ()) -> dict[str, Any]:
    """Raise ConfigError listing every problem; return the config when valid.

    In place: null training stages are dropped and the schema's defaults filled in. ``checks`` are further
    cross-key checks (each returns messages), run after the schema and the core checks pass.
    """
    drop_null_stages(config)
    msgs = schema_errors(config)
    if not msgs:
        fill_defaults(config)
        msgs = check_semantics(config)
        for check in checks:
            msgs += check(config)
    if msgs:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(msgs))
    return config


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Merge like Snakemake merges --configfile overlays: nested dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(*paths: str | Path, checks: Sequence[Check] = ()) -> dict[str, Any]:
    """Load and merge YAML config files in order, then validate."""
    config: dict[str, Any] = {}
    for p in paths:
        config = deep_merge(config, yaml.safe_load(Path(p).read_text()) or {})
    return validate_config(config, checks=checks)


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a resolved config, used to label runs and figures."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
