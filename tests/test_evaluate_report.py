"""Scoring every metric family, the cell summary, YaRN sizing, the contamination check and the report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from loongrl.eval import contamination, evaluate
from loongrl.eval.kinds import KINDS, read_completion
from loongrl.eval.metrics import score_one
from loongrl.eval.rows import task_row
from loongrl.inference import Completion
from loongrl.report import assemble as report


def row(metric, answers, meta=None, **kw):
    return {
        **task_row(
            id=kw.pop("id", "r0"),
            benchmark=kw.pop("benchmark", "x"),
            task=kw.pop("task", "t"),
            user=kw.pop("user", "q"),
            answers=answers,
            metric=metric,
            system=None,
            meta=meta,
            **kw,
        )
    }


def test_score_one_every_metric():
    lb = row("longbench_qa", ["Ozalj"])
    pred, s = score_one(lb, "<think>it is Ozalj</think> \\boxed{Ozalj, Croatia}")
    assert pred == "ozalj, croatia" and s["sub_em"] == 1.0 and s["exact_match"] == 0.0  # the authors' reading
    assert s["qa_f1"] == pytest.approx(2 / 3)
    assert score_one(lb, "Ozalj")[1]["sub_em"] == 0.0  # no box: no answer
    # a multi-answer NarrativeQA-style row: the headline scores against the first gold (QwenLong-L1's scripts),
    # a hit on any gold stays visible as sub_em_any
    nqa = row("longbench_qa", ["a young lawyer", "Saltram's friend"], task="narrativeqa")
    _, s = score_one(nqa, "<think>...</think> \\boxed{Saltram's friend}")
    assert s["sub_em"] == 0.0 and s["sub_em_any"] == 1.0
    _, s = score_one(nqa, "<think>...</think> \\boxed{A young lawyer}")
    assert s["sub_em"] == 1.0 and s["sub_em_any"] == 1.0
    assert score_one(row("ruler_all", ["12", "34"]), "<think>12 34</think>12")[1]["string_match_all"] == 0.5
    assert score_one(row("ruler_part", ["x y"]), "</think>X Y")[1]["string_match_part"] == 1.0
    assert score_one(row("choice", ["C"]), "</think>\\boxed{C}")[1]["accuracy"] == 1.0
    assert score_one(row("math", ["\\frac{1}{2}"]), "</think>\\boxed{0.5}")[1]["accuracy"] == 1.0
    assert score_one(row("niah", ["sit in Dolores Park"]), "</think>Sit in Dolores Park.")[1]["needle_recall"] == 1.0


def test_reasoning_completion_without_think_end_has_no_answer():
    """Item 6 of the eval-fidelity issue: a capped trace that quotes the needle scores 0 in reasoning mode (the
    old fallback scored the whole text), and the sample is flagged so the summary reports the share."""
    trace = "<think>The text says the best thing is to eat a sandwich and sit in Dolores Park on a sunny day"
    niah = row("niah", ["eat a sandwich and sit in Dolores Park on a sunny day"])
    assert score_one(niah, trace)[1]["needle_recall"] == 0.0
    assert (
        score_one(niah, trace + "</think>eat a sandwich and sit in Dolores Park on a sunny day")[1]["needle_recall"]
        == 1.0
    )
    ruler = row("ruler_all", ["1234567"])
    assert score_one(ruler, "<think>the number 1234567 is hidden")[1]["string_match_all"] == 0.0
    assert read_completion("<think>1234567", KINDS["reasoning"]).no_think
    # the instruct kind reads the whole completion: no reasoning to close
    assert score_one(ruler, "1234567", kind=KINDS["instruct"])[1]["string_match_all"] == 1.0
    assert not read_completion("1234567", KINDS["instruct"]).no_think


def test_instruct_kind_reads_box_then_stated_answer_then_whole_text():
    lb = row("longbench_qa", ["Ozalj"])
    inst = KINDS["instruct"]
    # the official filter prompt's form: the text after "the answer is"
    pred, s = score_one(lb, "Step 1: ... So the answer is Ozalj.", kind=inst)
    assert pred == "ozalj" and s["sub_em"] == 1.0
    assert read_completion("So the answer is Ozalj.", inst).stated == "Ozalj."
    assert score_one(lb, "blah \\boxed{Ozalj} and the answer is Zagreb", kind=inst)[0] == "ozalj"  # a box wins
    # nothing stated: the whole reply is the stated answer for other benchmarks, never scored on LongBench v1
    assert read_completion("Ozalj", inst).fallback and read_completion("Ozalj", inst).stated == "Ozalj"
    assert score_one(lb, "Ozalj", kind=inst)[1]["sub_em"] == 0.0
    assert score_one(row("choice", ["C"]), "C", kind=inst)[1]["accuracy"] == 1.0
    assert score_one(row("choice", ["C"]), "The answer is (B)", kind=inst)[1]["accuracy"] == 0.0
    # the same completion under the reasoning kind: no </think>, no answer
    assert score_one(lb, "So the answer is Ozalj.")[1]["sub_em"] == 0.0


def test_ifeval_uses_the_maintained_checkers(tmp_path):
    from conftest import SAMPLES

    scorer = evaluate.ifeval_scorer([SAMPLES / "gutenberg"], tmp_path)
    meta = {
        "key": 1,
        "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_sentences"],
        "kwargs": [{}, {"relation": "less than", "num_sentences": 3}],
    }
    r = row("ifeval", [], meta=meta)
    _, ok = score_one(r, "Mr. Smith went home. He slept.", scorer, kind=KINDS["instruct"])
    assert ok["prompt_level_strict_acc"] == 1.0  # "Mr." is not a sentence end for the trained Punkt model
    _, bad = score_one(r, "One, two. Three. Four. Five.", scorer, kind=KINDS["instruct"])
    assert bad["prompt_level_strict_acc"] == 0.0 and bad["inst_level_strict_acc"] == 0.0


class FakeBackend:
    def __init__(self, outs):
        self.outs = outs

    def generate_detailed(self, prompts, params, seeds=None):
        return [self.outs[i % len(self.outs)] for i in range(len(prompts))]


def test_evaluate_and_summarize_report_caps_and_buckets():
    rows = [
        row("longbench_qa", ["Oslo"], id="1", benchmark="longbench", task="narrativeqa", meta={"question": "q"}),
        row("longbench_qa", ["Bern"], id="2", benchmark="longbench", task="qasper", meta={"question": "q"}),
    ]
    rows[0]["prompt_tokens"], rows[1]["prompt_tokens"] = 20000, 100
    backend = FakeBackend([[Completion("ok</think>\\boxed{Oslo}", 5, False), Completion("<think>Oslo", 16, True)]])
    samples = evaluate.evaluate(rows, backend, evaluate.SamplingParams(n=2))
    assert [s["score"] for s in samples] == [1.0, 0.0, 0.0, 0.0]
    summ = evaluate.summarize(samples, {"model": "m"})
    assert summ["overall"]["hit_cap_share"] == 0.5 and summ["overall"]["samples"] == 4
    assert summ["overall"]["no_think_share"] == 0.5  # the capped trace never closed its reasoning
    assert summ["by_task"]["narrativeqa"]["score"] == 0.5
    assert set(summ["by_task_bucket"]) == {"narrativeqa@16-32K", "qasper@0-16K"}


def test_cell_plan_yarn_by_label_and_past_native_policy():
    """YaRN x4 for the 64K / 128K cells by their label, never raised past 4; a cell whose prompt + generation passes
    the native positions (the 32K RULER cell with 8,192 reasoning tokens; blocker 2 of issue 28: a 40,960 window
    on 32,768 positions, refused by vLLM) follows eval.past_native, and the window is sized from the rows' own caps."""
    y = {"factor": 4.0, "native_context": 32768, "min_length": 65536}

    def plan(length, prompt, cap, policy="yarn", yarn=y, caps=None):
        n = len(caps) if caps else 1
        return evaluate.plan_cell(
            [prompt] * n,
            labels=[length] * n,
            caps=caps or [cap],
            native=32768,
            yarn=yarn,
            past_native=policy,
            source="t.parquet",
        )

    short = plan(16384, 16384, 8192)  # fits natively: no YaRN, window = prompt + cap
    assert short.yarn is None and short.window == 24576 and not short.extend and not short.past_native
    ruler32 = plan(32768, 32768, 8192)
    assert ruler32.yarn == {"factor": 4.0, "native_context": 32768} and ruler32.past_native
    assert ruler32.window == 40960 <= ruler32.position_limit == 131072 and not ruler32.extend
    ext = plan(32768, 32768, 8192, policy="extend")
    assert ext.yarn is None and ext.extend and ext.window == 40960 and ext.position_limit == 32768
    clip = plan(32768, 30000, 8192, policy="clip")
    assert clip.yarn is None and clip.window == 32768 and clip.caps == [2768] and clip.clipped == 1
    with pytest.raises(ValueError, match="row 0 has a 32768-token prompt, no room"):
        plan(32768, 32768, 8192, policy="clip")
    r128 = plan(131072, 131000, 8192)
    assert r128.yarn["factor"] == 4.0 and r128.extend and r128.window == 139192  # not 4.25: vLLM's override
    assert plan(65536, 65000, 8192).yarn is not None
    # instruct RULER rows carry their own small caps: the window is the rows', not the cell's 8,192
    assert plan(32768, 32000, 8192, caps=[128, 30]).window == 32128
    assert plan(0, 30000, 10000).yarn is not None and plan(0, 10000, 10000).yarn is None  # LongBench, unlabelled
    with pytest.raises(ValueError, match=r"eval\.yarn is null"):
        plan(32768, 32768, 8192, yarn=None)
    assert plan(131072, 1000, 8192, yarn=None, policy="extend").yarn is None


def test_yarn_override_keeps_rope_theta():
    """The issue's snippet: rope_scaling on a transformers 5 config loses rope_theta; our override keeps it."""
    from loongrl.inference import yarn_rope_parameters
    from transformers import Qwen2Config

    lost = Qwen2Config(rope_theta=1e6)
    lost.rope_scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert lost.rope_parameters.get("rope_theta") is None  # what the old override did to every 64K/128K cell
    c = Qwen2Config(rope_theta=1e6)
    override = yarn_rope_parameters(c.to_dict(), factor=4, native_context=32768)
    c.update({"rope_parameters": override})  # as vLLM applies hf_overrides
    assert c.rope_parameters == {
        "rope_theta": 1e6,
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 32768,
    }
    legacy = {"rope_theta": 10000.0, "max_position_embeddings": 4096}  # a config.json of the older layout
    assert yarn_rope_parameters(legacy, factor=2, native_context=4096)["rope_theta"] == 10000.0
    with pytest.raises(ValueError, match="no rope_theta"):
        yarn_rope_parameters({}, factor=2, native_context=4096)


def test_transformers_backend_applies_yarn(tiny_model_dir):
    """The transformers engine applies the override (it used to drop it silently) and reports what it runs."""
    from loongrl.inference import make_backend, model_rope_parameters

    rope = model_rope_parameters(tiny_model_dir, factor=4, native_context=1024)
    b = make_backend("transformers", tiny_model_dir, device="cpu", rope_parameters=rope)
    assert b.rope == {k: rope[k] for k in ("rope_type", "factor", "original_max_position_embeddings", "rope_theta")}
    assert b.model.config.rope_parameters["rope_theta"] == rope["rope_theta"] is not None
    assert make_backend("transformers", tiny_model_dir, device="cpu").rope is None


def test_contamination_finds_exact_and_ngram_overlap():
    train = {"hotpotqa": ["Who wrote the novel that was adapted into the 1995 film with the famous lake scene?", "x"]}
    ev = [
        row(
            "longbench_qa",
            ["a"],
            id="1",
            task="hotpotqa",
            meta={"question": "who wrote the NOVEL that was adapted into the 1995 film with the famous lake scene"},
        ),
        row(
            "longbench_qa",
            ["a"],
            id="2",
            task="hotpotqa",
            meta={
                "question": "Tell me: who wrote the novel that was adapted into the 1995 film with the famous "
                "lake scene, please"
            },
        ),
        row("longbench_qa", ["a"], id="3", task="hotpotqa", meta={"question": "Where was Ozalj?"}),
    ]
    res = contamination.check(train, ev)["by_task"]["hotpotqa"]
    assert (res["questions"], res["exact"], res["ngram"]) == (3, 1, 2)


def _summary(path, model, bench, cell, by_task=None, overall=0.5, extra=None):
    def stats(s):
        return {
            "rows": 1,
            "samples": 2,
            "score": s,
            "metrics": {"sub_em": s, "qa_f1": s / 2, "exact_match": 0.0},
            "hit_cap_share": 0.25,
            "input_truncated_share": 0.0,
            "completion_tokens_mean": 10,
            "prompt_tokens_mean": 100,
        }

    s = {"model": model, "overall": stats(overall)}
    if by_task:
        s["by_task"] = {t: stats(v) for t, v in by_task.items()}
    s.update(extra or {})
    p = path / model / f"{bench}.{cell}.summary.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(s))
    return p


def test_report_tables_and_figures(tmp_path):

    paths = []
    for model in ("base", "stage2"):
        heldout = {"2wikimqa@test": 0.4, "2wikimqa@validation": 1.0, "qasper@test": 0.25}
        paths.append(
            _summary(
                tmp_path,
                model,
                "longbench",
                "all",
                {"2wikimqa": 0.5, "qasper": 0.25},
                extra={
                    "by_task_bucket": {},
                    "by_task_heldout": {k: {"score": v, "hit_cap_share": 0.0} for k, v in heldout.items()},
                },
            )
        )
        paths += [  # one cell per length; the heatmap merges them
            _summary(
                tmp_path,
                model,
                "niah",
                f"L{n}",
                extra={"by_length_depth": {f"{n}@{d}": {"score": 1.0} for d in (0, 50)}},
            )
            for n in (1024, 2048)
        ]
        paths += [_summary(tmp_path, model, "ruler", f"L{n}", overall=0.9) for n in (16384, 32768)]
        paths += [_summary(tmp_path, model, b, "all") for b in ("mmlu", "math500", "ifeval")]
        trained = model != "base"  # the held-out training task at L and 2L: the trained model gets 2 more rows
        paths += [
            _summary(
                tmp_path,
                model,
                "heldout",
                f"L{n}",
                extra={"row_scores": {f"r{i}": float(i < 2 or (trained and i < 4)) for i in range(6)}},
            )
            for n in (384, 768)
        ]
    metrics = tmp_path / "train/stage1/metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(
        "\n".join(json.dumps({"step": i, "reward": i / 10, "completions/mean_length": 5 * i}) for i in (1, 2))
    )
    out = report.build_report(
        summaries=paths,
        paper_file=ROOT / "workflow/report/paper_tables.yaml",
        out_dir=tmp_path / "ablation",
        config_hash="abc123",
        policy="tiny",
        date="2026-11-24",
        ablations={"table4": {"LoongRL w/o KeyChain": "base", "LoongRL": "stage2"}},
    )
    md4 = out["report"].read_text()
    assert "### Table 4: KeyChain ablation" in md4 and "| paper: LoongRL-7B w/o KeyChain | 80.3 |" in md4
    assert "| **ours: LoongRL w/o KeyChain (base)** | – | 50.0 (cap 25%) |" in md4
    assert out["table4"].exists()
    out = report.build_report(
        summaries=paths,
        paper_file=ROOT / "workflow/report/paper_tables.yaml",
        out_dir=tmp_path / "report",
        config_hash="abc123",
        policy="tiny",
        date="2026-11-24",
        train_metrics=[metrics],
    )
    md = out["report"].read_text()
    # the report opens on the effect: the table, then its curves (score vs length, training reward), then Table 2.
    # The gain interval includes 0: 2 of 6 rows differ, and (4/6)^6 = 8.8 % of resamples draw neither
    head = md.split("### Table 2")[0]
    assert head.index("## The effect: base vs trained") < head.index("figures/effect_vs_length.png")
    assert "figures/training_curves.png" in head and md.count("figures/training_curves.png") == 1
    assert "| stage2 | heldout.L384 | 6 | 33.3 [0.0, 66.7] | 66.7 [33.3, 100.0] | +33.3 [0.0, 66.7] |" in head
    assert "| **ours: stage2** | – | – | 50.0 (cap 25%) | – | – | 25.0 (cap 25%) | 50.0 (cap 25%) |" in md
    assert "| paper: LoongRL-7B | 72.4 | 83.1 | 91.1 |" in md
    # beside the full set: the same completions without the validation slice's rows, labelled
    assert "| **ours: stage2 [held-out subset]** | – | – | 40.0 | – | – | 25.0 |" in md
    assert "| paper: LoongRL-7B | 69.8 | 47.4 | 57.2 | 93.4 | 91.4 |\n" in md  # Table 3: only the lengths we ran
    assert "| **ours: base** | 90.0 (cap 25%) | 90.0 (cap 25%) | 90.0 (cap 25%) |" in md  # Table 7 + average
    # each table says what still differs from the paper's setting
    t7 = md.split("### Table 7")[1].split("###")[0]
    assert "Settings that still differ from the paper's:" in t7 and "Project Gutenberg books" in t7
    assert "no-`</think>` share" in md
    for key in (
        "table2",
        "table3",
        "table7",
        "scorers",
        "niah_base",
        "niah_stage2",
        "ruler_vs_length",
        "training_curves",
        "effect_vs_length",
    ):
        assert out[key].stat().st_size > 0, key
    assert out["niah_base"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_cli_passes_ablations(tmp_path):
    """``python -m loongrl.report --ablations`` reaches build_report: Table 4 is written (it once was dropped)."""
    paths = [_summary(tmp_path, "base", "longbench", "all")]
    out = tmp_path / "cli"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "loongrl.report",
            "--summaries",
            *map(str, paths),
            "--paper",
            str(ROOT / "workflow/report/paper_tables.yaml"),
            "--ablations",
            json.dumps({"table4": {"LoongRL w/o KeyChain": "base"}}),
            "--out-dir",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = (out / "tables/table4.csv").read_text().splitlines()
    assert rows[0].startswith("row,") and rows[1].startswith("ours:LoongRL w/o KeyChain (base),")
    assert "### Table 4: KeyChain ablation" in (out / "report.md").read_text()


def test_rows_with_their_own_cap_are_generated_under_it():
    """RULER's per-task caps for the instruct kind (meta.max_new_tokens) lower the cell's cap, never raise it."""
    calls = []

    class Recording:
        def generate_detailed(self, prompts, params, seeds=None):
            calls.append((len(prompts), params.max_new_tokens))
            return [[Completion(f"</think>{p[-1]['content']}", 1, False)] for p in prompts]

    rows = [
        row("ruler_all", ["a"], id="1", meta={"max_new_tokens": 30}),
        row("ruler_all", ["b"], id="2"),
        row("ruler_all", ["c"], id="3", meta={"max_new_tokens": 30}),
        row("ruler_all", ["d"], id="4", meta={"max_new_tokens": 9000}),
    ]
    out = evaluate.generate_rows(rows, Recording(), evaluate.SamplingParams(n=1, max_new_tokens=128))
    assert sorted(calls) == [(2, 30), (2, 128)]
    assert [c[0].text for c in out] == [f"</think>{r['prompt'][-1]['content']}" for r in rows]  # row order kept


def test_eval_kinds_config_errors():
    from loongrl.eval.kinds import kinds_in_use, model_kind
    from loongrl.eval.registry import config_errors

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    ev = cfg["eval"]
    assert model_kind(ev, "base").name == "instruct" and model_kind(ev, "stage2").name == "reasoning"
    assert kinds_in_use(ev) == ["reasoning", "instruct"]
    assert kinds_in_use({**ev, "models": ["stage1"]}) == ["reasoning"]
    bad = {**cfg, "eval": {**ev, "kinds": {"nobody": "instruct"}}}
    assert any("eval.kinds.nobody" in m for m in config_errors(bad))


def test_bootstrap_intervals_hand_worked():
    """Percentile bootstrap of the mean. Four rows [0, 0, 0, 1]: a resampled mean is k/4 with k ~ Binomial(4, 1/4),
    so P(0) = 0.316, P(<= 1/2) = 0.949, P(<= 3/4) = 0.996: the 95 % interval is [0, 0.75]. Two rows [0, 1]: means
    0 / 0.5 / 1 with 1/4, 1/2, 1/4: the interval is [0, 1]. Constant rows: a point."""
    from loongrl.report.tables import bootstrap_ci, effect_rows, paired_gain

    assert bootstrap_ci([0, 0, 0, 1], resamples=20000) == (0.0, 0.75)
    assert bootstrap_ci([0, 1], resamples=20000) == (0.0, 1.0)
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    g = paired_gain({"a": 0.0, "b": 0.0, "c": 1.0, "d": 0.0}, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 0.0})
    assert g["rows"] == 4 and g["base"] == 0.25 and g["score"] == 1.0  # only the shared rows count
    assert g["gain"] == 0.75 and g["gain_ci"] == bootstrap_ci([1, 1, 0, 1])
    assert g["gain_ci"][0] > 0  # a paired gain on these rows is above 0
    by_model = {
        "base": {"heldout.L512": {"row_scores": {"a": 0.0, "b": 1.0}}},
        "stage1": {"heldout.L512": {"row_scores": {"a": 1.0, "b": 1.0}}, "niah.L1024": {"row_scores": {"x": 1.0}}},
    }
    rows = effect_rows(by_model, ["base", "stage1"])
    assert [(r["model"], r["cell"], r["gain"]) for r in rows] == [("stage1", "heldout.L512", 0.5)]
