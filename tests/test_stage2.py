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

    def generate(self, prompts, params, seeds=None):
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
    # train.stage2_keep partial: the never-solved row goes too (its groups are all-0: no gradient)
    kept, stats = select_unsolved(rows, solved, 8, "partial")
    assert [r["id"] for r in kept] == ["r1"] and stats["keep"] == "partial"


def test_partial_selection_of_a_deterministic_policy_stops_with_its_histogram(tmp_path):
    """Every row 0/n or n/n (issue 33's collapsed laptop policy): nothing has reward variance, so stage II stops
    with the counts rather than train on all-0 groups."""
    from loongrl.train.stage2 import SOLVED_SCHEMA, select_from_counts

    rows = [_row(i, "retrieval_multikey", "Paris") for i in range(4)]
    data, counts = tmp_path / "stage1.parquet", tmp_path / "counts.parquet"
    write_parquet(rows, data, MIXTURE_SCHEMA)
    write_parquet([{"id": r["id"], "solved": 4 * (i % 2), "n": 4} for i, r in enumerate(rows)], counts, SOLVED_SCHEMA)
    import pytest

    with pytest.raises(ValueError, match=r"stage2_keep partial keeps no example .*deterministic.* 0/4: 2, 4/4: 2"):
        select_from_counts(
            data, [counts], output=tmp_path / "k.parquet", stats_path=tmp_path / "k.json", keep="partial"
        )
    assert not (tmp_path / "k.parquet").exists()
    stats = select_from_counts(data, [counts], output=tmp_path / "k.parquet", stats_path=tmp_path / "k.json")
    assert stats["kept"] == 2  # the paper's rule keeps the two never-solved rows


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


class _SeedDependent:
    """Solves a row in as many rollouts as its seed says, so results depend on seeding and nothing else."""

    def generate(self, prompts, params, seeds=None):
        assert seeds is not None and len(seeds) == len(prompts)
        right, wrong = r"</think>\boxed{Paris}", r"</think>\boxed{Rome}"
        return [[right] * (s % (params.n + 1)) + [wrong] * (params.n - s % (params.n + 1)) for s in seeds]


def test_sharded_stage2_selection_equals_one_job(tmp_path):
    from loongrl.io import shard_rows
    from loongrl.train.stage2 import SOLVED_SCHEMA, select_from_counts

    rows = [_row(i, "keychain_hotpotqa" if i % 2 else "plain_qa_musique", "Paris") for i in range(11)]
    data = tmp_path / "stage1.parquet"
    write_parquet(rows, data, MIXTURE_SCHEMA)
    params = SamplingParams(n=4, seed=9)

    def counts(shards: int) -> list:
        paths = []
        for k in range(shards):
            part = shard_rows(rows, k, shards)
            solved = solved_counts(part, _SeedDependent(), params)
            path = tmp_path / f"{shards}-{k}.parquet"
            write_parquet(
                [{"id": r["id"], "solved": s, "n": 4} for r, s in zip(part, solved, strict=True)], path, SOLVED_SCHEMA
            )
            paths.append(path)
        return paths

    outs = {}
    for shards in (1, 3):
        out, stats = tmp_path / f"kept{shards}.parquet", tmp_path / f"stats{shards}.json"
        select_from_counts(data, counts(shards), output=out, stats_path=stats)
        outs[shards] = (out.read_bytes(), stats.read_bytes())
    assert outs[1] == outs[3]
    kept = read_parquet(tmp_path / "kept1.parquet")
    assert 0 < len(kept) < len(rows)  # the seeds split the rows into solved and unsolved
    import pytest

    with pytest.raises(ValueError, match="no solved count"):
        select_from_counts(data, counts(3)[:2], output=tmp_path / "x.parquet", stats_path=tmp_path / "x.json")
