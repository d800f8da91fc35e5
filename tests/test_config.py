from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT
from loongrl.config import ConfigError, deep_merge
from loongrl.pipeline import load_config, validate_config


@pytest.fixture()
def paper():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_paper_and_local_configs_are_valid(paper):
    validate_config(paper)
    local = load_config(ROOT / "config.yaml", ROOT / "profiles/local/config.tiny.yaml")
    assert local["models"]["policy"] == "tiny-qwen2"
    assert local["filter"]["n"] == 8  # inherited from the paper config


def test_paper_values(paper):
    assert paper["models"]["policy"] == "Qwen/Qwen2.5-7B-Instruct"
    assert paper["models"]["filter"] == "Qwen/Qwen2.5-32B-Instruct"
    assert paper["filter"]["n"] == 8
    assert (paper["filter"]["keep_min"], paper["filter"]["keep_max"]) == (1, 7)
    assert paper["fill"]["train_length"] == 16384
    assert paper["keychain"]["chain_length"] == 4
    counts = paper["mixture"]["counts"]
    total = (
        sum(counts["keychain"].values())
        + sum(counts["plain_qa"].values())
        + counts["retrieval_multikey"]
        + counts["retrieval_multivalue"]
        + counts["dapo_math"]
        + counts["math_choice"]
    )
    assert total == 21024  # [P Table 1]
    # warm-up: one pass over its data [P §3.2.2] ("42 steps" in paper-exact); stage I's checkpoint is picked on
    # at least 200 validation rows (fewer: the pick is mostly noise)
    assert paper["train"]["stages"]["warmup"]["steps"] == "epoch"
    val = paper["eval"]["validation"]
    assert len(val["tasks"]) * val["rows_per_task"] >= 200


def test_unknown_key_is_named(paper):
    bad = copy.deepcopy(paper)
    bad["filter"]["temprature"] = 0.6
    with pytest.raises(ConfigError, match=r"config key 'filter\.temprature': unknown key"):
        validate_config(bad)


def test_wrong_type_is_named(paper):
    bad = copy.deepcopy(paper)
    bad["keychain"]["chain_length"] = "four"
    with pytest.raises(ConfigError, match=r"config key 'keychain\.chain_length'"):
        validate_config(bad)


def test_semantic_errors_are_named(paper):
    bad = deep_merge(paper, {"filter": {"keep_max": 9}})
    with pytest.raises(ConfigError, match=r"'filter\.keep_max'"):
        validate_config(bad)
    bad = deep_merge(paper, {"fill": {"train_length": 12345}})
    with pytest.raises(ConfigError, match=r"'fill\.train_length'"):
        validate_config(bad)
    bad = deep_merge(paper, {"mixture": {"counts": {"plain_qa": {"hotpotqa": 9999}}}})
    with pytest.raises(ConfigError, match=r"'mixture\.counts\.plain_qa\.hotpotqa'"):
        validate_config(bad)


def test_eval_model_references_are_checked():
    base = load_config(ROOT / "config.yaml")
    cfg = copy.deepcopy(base)
    cfg["eval"]["models"].append("stage3")
    cfg["eval"]["ablations"] = {"table4": {"no KeyChain": "nokc"}}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "config key 'eval.models[4]': 'stage3' is not base or a train.stages name" in str(err.value)
    assert "config key 'eval.ablations.table4.no KeyChain': 'nokc' is not in eval.models" in str(err.value)
    cfg = copy.deepcopy(base)
    cfg["eval"]["extra_models"] = {"nokc": "/runs/nokc/results/train/stage2/model"}
    cfg["eval"]["ablations"] = {"table4": {"no KeyChain": "nokc", "LoongRL": "stage2"}}
    validate_config(cfg)


def test_eval_benchmarks_pick_a_subset_of_the_matrix():
    """``eval.benchmarks`` (what make demo measures): a subset in registry order; an unknown name is a key error."""
    from loongrl.eval.registry import eval_cells

    full = load_config(ROOT / "config.yaml")
    assert full["eval"]["benchmarks"] is None
    demo = load_config(
        *(ROOT / p for p in ("config.yaml", "profiles/local/config.tiny.yaml", "profiles/nano/config.nano.yaml")),
        ROOT / "profiles/nano/config.demo.yaml",
    )
    cells = eval_cells(demo["eval"])
    assert cells == [("niah", "L1024"), ("niah", "L2048"), ("heldout", "L384"), ("heldout", "L768")]
    assert set(cells) < set(eval_cells({**demo["eval"], "benchmarks": None}))
    assert "stage2" not in demo["train"]["stages"] and demo["eval"]["models"] == ["base", "stage1"]
    cfg = copy.deepcopy(full)
    cfg["eval"]["benchmarks"] = ["niah", "needle"]
    with pytest.raises(ConfigError, match=r"config key 'eval\.benchmarks\[1\]': 'needle' is not one of"):
        validate_config(cfg)


def test_retrieval_counts_are_checked_at_config_time(paper):
    """A mixture count above the rows the retrieval stage builds fails when the config loads, naming the key."""
    cfg = copy.deepcopy(paper)
    cfg["mixture"]["counts"]["retrieval_multikey"] = cfg["retrieval"]["multikey"]["examples"] + 1
    with pytest.raises(ConfigError, match=r"config key 'mixture\.counts\.retrieval_multikey': .* but retrieval"):
        validate_config(cfg)


def test_paper_config_uses_real_sources(paper):
    """The shipped config downloads math and books; the shipped samples are the local profiles' business."""
    cfg = validate_config(copy.deepcopy(paper))
    assert cfg["math"]["source"] == "download" and cfg["retrieval"]["source"] == "download"
    for key in ("dapo", "math_choice"):
        spec = cfg["math"][key]
        assert spec["url"].startswith("https://") and len(spec["sha256"]) == 64
    assert "/resolve/main/" not in cfg["math"]["dapo"]["url"]  # a pinned revision, not a moving branch
    assert len(set(cfg["retrieval"]["gutenberg_ids"])) >= 40
    local = load_config(ROOT / "config.yaml", ROOT / "profiles/local/config.tiny.yaml")
    assert local["math"]["source"] == "local" and local["retrieval"]["source"] == "local"


def test_local_source_too_small_fails_at_config_load(paper, monkeypatch):
    monkeypatch.chdir(ROOT)  # config paths are relative to the project root, as Snakemake runs there
    cfg = copy.deepcopy(paper)
    cfg["math"]["source"] = "local"  # 300 shipped rows each, but the paper mixture asks for 2,500
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "config key 'math.dapo.local_file'" in msg and "holds 300 rows" in msg and "dapo_math asks for 2500" in msg
    assert "config key 'math.math_choice.local_file'" in msg
    cfg = copy.deepcopy(paper)
    cfg["raw_qa"]["source"] = "local"  # a few hundred sample questions vs 5,000 per dataset
    with pytest.raises(ConfigError, match=r"config key 'split.plain_questions': hotpotqa has \d+ questions"):
        validate_config(cfg)
    cfg = copy.deepcopy(paper)
    cfg["math"]["source"] = "local"
    cfg["math"]["dapo"]["local_file"] = "nowhere.parquet"
    with pytest.raises(ConfigError, match=r"config key 'math\.dapo\.local_file': nowhere\.parquet does not exist"):
        validate_config(cfg)


def test_local_raw_qa_reads_train_splits_only(paper, monkeypatch):
    """The shipped samples hold train and dev files: the default globs take the train files only, and a glob that
    reaches a dev file is a config error naming the key, unless raw_qa.allow_eval_splits says so."""
    from loongrl.data.check_inputs import EVAL_SPLIT

    monkeypatch.chdir(ROOT)
    raw = paper["raw_qa"]
    for ds, spec in raw["local_files"].items():
        files = sorted(p.name for pat in spec["files"] for p in (ROOT / raw["local_dir"] / spec["folder"]).glob(pat))
        assert files and not [f for f in files if EVAL_SPLIT.search(f)], (ds, files)
    cfg = deep_merge(paper, yaml.safe_load((ROOT / "profiles/local/config.tiny.yaml").read_text()))
    validate_config(copy.deepcopy(cfg))  # the local profile: the train files suffice
    cfg["raw_qa"]["local_files"]["hotpotqa"]["files"] = ["hotpot_*.json"]
    with pytest.raises(ConfigError, match=r"config key 'raw_qa.local_files.hotpotqa'.*hotpot_dev_distractor_v1"):
        validate_config(copy.deepcopy(cfg))
    cfg["raw_qa"]["allow_eval_splits"] = True
    validate_config(cfg)


def test_conda_envs_pin_what_pyproject_pins():
    """envs/*.yaml (--sdm conda) and pyproject.toml (the pip route) install the same versions: every pip entry of an
    env equals pyproject's requirement for that package, the `vllm` extra's (the GPU stack) over the base one's."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def by_name(specs):
        return {Requirement(s).name.lower().replace("_", "-"): Requirement(s) for s in specs}

    base = by_name(project["dependencies"])
    gpu = {**base, **by_name(project["optional-dependencies"]["vllm"])}
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert {e.name for e in envs} == {"data.yaml", "filter.yaml", "train.yaml"}
    for env in envs:
        pins = base if env.name == "data.yaml" else gpu  # the GPU jobs' envs take the `vllm` extra's pins
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        for spec in pip:
            req = Requirement(spec)
            want = pins.get(req.name.lower().replace("_", "-"))
            assert want is not None, f"{env.name}: {req.name} is not a dependency in pyproject.toml"
            assert (req.specifier, req.extras) == (want.specifier, want.extras), f"{env.name}: {spec} != {want}"


def test_eval_haystacks_are_never_training_books(paper, tmp_path, monkeypatch):
    """NIAH / RULER haystacks come from books training never reads (issue 31): the paper config downloads its own
    ids; a local config uses retrieval.heldout_books; any overlap is a config error naming the key."""
    from loongrl.eval.registry import haystack_books, haystack_errors

    monkeypatch.chdir(ROOT)
    assert not haystack_errors(paper) and haystack_books(paper) is None
    assert not set(paper["eval"]["haystack_ids"]) & set(paper["retrieval"]["gutenberg_ids"])
    shared = copy.deepcopy(paper)
    shared["eval"]["haystack_ids"] = [145, 84]
    assert haystack_errors(shared) == [
        "config key 'eval.haystack_ids': [84] are training books (retrieval.gutenberg_ids)"
    ]
    with pytest.raises(ConfigError, match=r"eval\.haystack_ids"):
        validate_config(shared)
    local = load_config(ROOT / "config.yaml", ROOT / "profiles/local/config.tiny.yaml")
    assert haystack_books(local) == ["pg84.txt"] and not haystack_errors(local)
    local["retrieval"]["heldout_books"] = []
    assert "retrieval.heldout_books" in haystack_errors(local)[0]
    other = tmp_path / "books"
    other.mkdir()
    (other / "pg1342.txt").write_text("a training book under another folder")
    local["eval"]["books_dir"] = str(other)
    assert haystack_books(local) is None
    assert haystack_errors(local) == [
        "config key 'eval.books_dir': ['pg1342.txt'] are also training books (retrieval.books_dir)"
    ]
    # only configs that build book haystacks are held to it
    local["eval"]["benchmarks"] = ["longbench"]
    assert haystack_errors(local) == []


def test_paper_exact_preset_restates_every_marked_deviation(paper):
    """presets/paper-exact.yaml holds a line for every config.yaml key whose comment carries ⚠ (paper and the
    authors' code disagree), sets the reward back to the paper's two-way substring rule, and validates."""
    preset = yaml.safe_load((ROOT / "presets/paper-exact.yaml").read_text())
    marked, stack, pending = [], [], False
    for line in (ROOT / "config.yaml").read_text().splitlines():
        body = line.split("#", 1)[0]
        pending = pending or ("⚠" in line and bool(stack))  # the file's header comment names the mark only
        if not body.strip():
            continue
        indent = len(body) - len(body.lstrip())
        key = body.strip().split(":", 1)[0]
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        if pending:
            marked.append([k for _, k in stack])
            pending = False

    def has(tree, path):
        for k in path:
            if not isinstance(tree, dict) or k not in tree:
                return False
            tree = tree[k]
        return True

    assert len(marked) >= 7, marked
    missing = [".".join(p) for p in marked if not has(preset, p)]
    assert not missing, f"presets/paper-exact.yaml lacks {missing}"
    assert preset["train"]["reward"] == {"match": "chars", "reject_hedges": False, "guards": False}
    validate_config(deep_merge(copy.deepcopy(paper), preset))


def test_defaults_beside_a_ref_are_filled():
    """``{$ref: posint, default: 3}``: the default is the property's, not the referenced definition's (it was
    dropped when the reference was resolved first); and the Book-RULER KeyChain section fills in whole."""
    from loongrl.config import fill_defaults

    cfg = fill_defaults({"raw_qa": {}, "keychain": {}, "mixture": {"counts": {}}})
    assert cfg["raw_qa"]["retries"] == 3
    assert cfg["keychain"]["books"]["pair_format"] == "json" and cfg["keychain"]["books"]["answer_prefix"] is True
    assert cfg["mixture"]["counts"]["keychain_books"] == 0 == cfg["mixture"]["counts"]["direct_books"]
