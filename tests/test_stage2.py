from __future__ import annotations

from loongrl.inference import SamplingParams
from loongrl.io import read_parquet, write_parquet
from loongrl.schemas import MIXTURE_SCHEMA
from loongrl.train.rewards import make_reward_fns
from loongrl.train.stage2 import select_unsolved, solved_counts


def _row(i, src, ans):
    return {
        "id": f"r{i}",
        "data_source": src,
        "source": src,
        "prompt": [{"role": "user", "content": f"q{i}"}],
        "answers": [ans],
        "prompt_tokens": 5,
        "pass_rate": None,
    }


class _Scripted:
    """Answers row i correctly in ``good[i]`` of the n rollouts."""

    def __init__(self, good):
        self.good = good

    def generate(self, prompts, params):
        out = []
        for i, _ in enumerate(prompts):
            right, wrong = r"</think>\boxed{Paris}", r"</think>\boxed{Rome}"
            out.append([right] * self.good[i] + [wrong] * (params.n - self.good[i]))
        return out


def test_drop_examples_solved_every_time(tmp_path):
    rows = [
        _row(0, "keychain_hotpotqa", "Paris"),
        _row(1, "plain_qa_musique", "Paris"),
        _row(2, "keychain_hotpotqa", "Paris"),
        _row(3, "plain_qa_musique", "Paris"),
    ]
    solved = solved_counts(rows, _Scripted([8, 7, 0, 8]), SamplingParams(n=8))
    assert solved == [8, 7, 0, 8]
    kept, stats = select_unsolved(rows, solved, 8)
    assert [r["id"] for r in kept] == ["r1", "r2"]
    assert stats["kept"] == 2 and stats["kept_fraction"] == 0.5
    assert stats["by_data_source"] == {
        "keychain_hotpotqa": {"examples": 2, "kept": 1},
        "plain_qa_musique": {"examples": 2, "kept": 1},
    }
    assert stats["solved_histogram"][8] == 2 and stats["solved_histogram"][0] == 1
    write_parquet(kept, tmp_path / "s2.parquet", MIXTURE_SCHEMA)
    assert [r["id"] for r in read_parquet(tmp_path / "s2.parquet")] == ["r1", "r2"]


def test_per_family_reward_functions_partition_the_batch():
    fns = make_reward_fns()
    assert [f.__name__ for f in fns] == [
        "reward_keychain",
        "reward_plain_qa",
        "reward_retrieval",
        "reward_math_choice",
        "reward_dapo_math",
    ]
    comps = [r"\boxed{Paris}", r"\boxed{B}", r"\boxed{1234567}"]
    srcs = ["keychain_musique", "math_choice", "retrieval_multikey"]
    answers = [["Paris"], ["B"], ["1234567"]]
    table = [f(completions=comps, data_source=srcs, answers=answers) for f in fns]
    assert table[0] == [1.0, None, None] and table[3] == [None, 1.0, None] and table[2] == [None, None, 1.0]
    assert all(v is None for v in table[1] + table[4])
