from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import threading
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import RAW_FILES
from loongrl import download
from loongrl.data import raw_qa
from loongrl.io import DataError


def test_samples_normalise(raw_rows):
    for ds, rows in raw_rows.items():
        assert rows, ds
        for r in rows:
            assert r["question"] and r["documents"] and r["answers"]
            assert all(d["title"] is not None and d["text"] for d in r["documents"])
    assert all(len(r["documents"]) == 20 for r in raw_rows["musique"])
    assert all(len(r["documents"]) == 10 for r in raw_rows["2wikimqa"])
    # MuSiQue aliases are kept; gold titles come from supporting facts / is_supporting.
    assert any(len(r["answers"]) > 1 for r in raw_rows["musique"])
    assert all(r["gold_titles"] for r in raw_rows["hotpotqa"])


def _write_rows(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (lambda r: r.pop("question"), "question", "missing"),
        (lambda r: r.__setitem__("answer", 42), "answer", "expected str"),
        (lambda r: r.__setitem__("answer", ""), "answer", "empty string"),
        (lambda r: r.__setitem__("answer", "  \t"), "answer", "empty string"),
        (lambda r: r.__setitem__("answer", "the ."), "answer", "no words after SQuAD normalisation"),
        (lambda r: r.__setitem__("context", []), "context", "no documents"),
        (lambda r: r["context"].__setitem__(1, ["title only"]), "context[1]", "expected [title"),
    ],
)
def test_malformed_hotpot_rows_name_file_row_field(tmp_path, mutate, field, problem):
    rows = json.loads(RAW_FILES["hotpotqa"][0].read_text())[:5]
    mutate(rows[3])
    src = _write_rows(tmp_path / "bad.json", rows)
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError) as err:
        raw_qa.main(["--dataset", "hotpotqa", "--inputs", str(src), "--output", str(out)])
    msg = str(err.value)
    assert str(src) in msg and rows[3]["_id"] in msg and f"field '{field}'" in msg and problem in msg
    assert not out.exists()
    assert not list(tmp_path.glob(".out.parquet*"))  # no temp file left behind either


def test_malformed_musique_row(tmp_path):
    lines = RAW_FILES["musique"][0].read_text().splitlines()[:3]
    row = json.loads(lines[1])
    row["paragraphs"][2] = {"title": "x"}
    lines[1] = json.dumps(row)
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join(lines))
    with pytest.raises(DataError, match=rf"row {row['id']}: field 'paragraphs\[2\]'"):
        raw_qa.normalise_files("musique", [src])


def test_musique_blank_answer_is_an_error(tmp_path):
    lines = RAW_FILES["musique"][0].read_text().splitlines()[:3]
    row = json.loads(lines[2])
    row["answer"] = " "
    lines[2] = json.dumps(row)
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join(lines))
    with pytest.raises(DataError, match=rf"{src}.*row {row['id']}: field 'answer': empty string"):
        raw_qa.normalise_files("musique", [src])


def test_broken_json_line_is_located(tmp_path):
    src = tmp_path / "m.jsonl"
    src.write_text('{"id": "a"}\n{not json\n')
    with pytest.raises(DataError, match="line 2"):
        raw_qa.read_rows(src)


def test_normalise_cli_writes_parquet_loadable_by_datasets(tmp_path):
    import datasets

    out = tmp_path / "hotpot.parquet"
    raw_qa.main(
        [
            "--dataset",
            "hotpotqa",
            "--inputs",
            str(RAW_FILES["hotpotqa"][0].parent),
            "--patterns",
            "hotpot_*.json",
            "--max-questions",
            "30",
            "--output",
            str(out),
        ]
    )
    assert pq.read_table(out).num_rows == 30
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert ds.column_names == ["id", "dataset", "question", "answers", "documents", "gold_titles"]


class _Server:
    """A loopback HTTP server whose first ``fail_first`` requests get HTTP 500."""

    def __init__(self, payload: bytes, fail_first: int = 0):
        state = {"left": fail_first, "hits": 0}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                state["hits"] += 1
                if state["left"] > 0:
                    state["left"] -= 1
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.state = state
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _zip_payload() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/train.json", RAW_FILES["2wikimqa"][1].read_text())
        zf.writestr("data/dev.json", "[]")
    return buf.getvalue()


def test_download_retries_unzips_and_records_manifest(tmp_path):
    payload = _zip_payload()
    srv = _Server(payload, fail_first=1)
    try:
        m = download.download_dataset("2wikimqa", srv.url, ["train.json"], tmp_path, retries=3)
    finally:
        srv.close()
    assert srv.state["hits"] == 2
    assert m["sha256"] == hashlib.sha256(payload).hexdigest()
    assert (tmp_path / "train.json").exists() and not (tmp_path / "dev.json").exists()
    assert json.loads((tmp_path / "MANIFEST.json").read_text())["files"].keys() == {"train.json"}
    rows = raw_qa.normalise_files("2wikimqa", [tmp_path / "train.json"])
    assert len(rows) > 100


def test_download_checksum_mismatch_fails(tmp_path):
    srv = _Server(_zip_payload())
    try:
        with pytest.raises(download.DownloadError, match="sha256"):
            download.download_dataset("2wikimqa", srv.url, ["train.json"], tmp_path, sha256="0" * 64, retries=1)
    finally:
        srv.close()
    assert not (tmp_path / "MANIFEST.json").exists()


def test_download_gives_up_after_retries(tmp_path):
    srv = _Server(b"", fail_first=10)
    try:
        with pytest.raises(download.DownloadError, match="after 2 attempts"):
            download.fetch(srv.url, tmp_path / "x", retries=2, backoff=0)
    finally:
        srv.close()
    assert not (tmp_path / "x").exists()


def test_repeated_ids_dropped_when_identical_error_when_different(tmp_path):
    """A row repeated verbatim (seen in merged dumps) is dropped and counted; the same id with other content is a
    broken source file, named with both rows."""
    lines = RAW_FILES["musique"][0].read_text().splitlines()[:3]
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join([*lines, lines[1]]))
    stats = {}
    rows = raw_qa.normalise_files("musique", [src], stats=stats)
    assert len(rows) == 3 and stats["duplicates_dropped"] == 1 and stats["questions"] == 3
    other = json.loads(lines[1])
    other["answer"] = "something else"
    src.write_text("\n".join([*lines, json.dumps(other)]))
    with pytest.raises(DataError, match=rf"{src}: row 3: field 'id': id '{other['id']}' was already row 1 of {src}"):
        raw_qa.normalise_files("musique", [src])


def test_stage_cli_turns_a_truncated_parquet_into_one_line(tmp_path, tiny_model_dir):
    """The issue's case: the first 5,000 bytes of a parquet between stages fed to the KeyChain stage. One line
    naming the file and the problem, exit status 2, no output written."""
    import subprocess
    import sys

    from loongrl.io import write_parquet

    good = tmp_path / "good.parquet"
    rows = [{"id": str(i), "question": hashlib.sha256(str(i).encode()).hexdigest() * 4} for i in range(400)]
    write_parquet(rows, good)
    assert good.stat().st_size > 10_000
    cut = tmp_path / "fill.parquet"
    cut.write_bytes(good.read_bytes()[:5000])
    out = tmp_path / "keychain.parquet"
    params = '{"chain_length": 3, "chains_per_1k": 1, "key_format": "uuid", "quote_start_key": false, "insert_at": "x"}'
    cmd = [sys.executable, "-m", "loongrl.data.keychain", "--filled", str(cut), "--raw", str(good)]
    cmd += ["--tokenizer", str(tiny_model_dir), "--length", "1024", "--params", params]
    cmd += ["--output", str(out), "--stats", str(tmp_path / "stats.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr and last[-1].startswith("error (keychain): ")
    assert f"{cut}: row -: field '<file>': not a readable parquet file" in last[-1]
    assert not out.exists() and not (tmp_path / "stats.json").exists()


def _keychain_cli(tmp_path, tiny_model_dir, filled, raw):
    import subprocess
    import sys

    params = '{"chain_length": 3, "chains_per_1k": 1, "key_format": "uuid", "quote_start_key": false, "insert_at": "x"}'
    cmd = [sys.executable, "-m", "loongrl.data.keychain", "--filled", str(filled), "--raw", str(raw)]
    cmd += ["--tokenizer", str(tiny_model_dir), "--length", "1024", "--params", params]
    cmd += ["--output", str(tmp_path / "kc.parquet"), "--stats", str(tmp_path / "stats.json")]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # a string answer used to become a list of its characters downstream (issue 29 item 8)
        ([{"id": "a", "dataset": "d", "question": "q", "answers": "Paris"}], "field 'answers': type string"),
        ([{"id": "a", "dataset": "d", "question": "q"}], "field 'answers': missing column"),
        ([{"id": "a", "dataset": "d", "question": "q", "answers": []}], "row 0: field 'answers': expected a non-empty"),
        (
            [{"id": "a", "dataset": "d", "question": "q", "answers": ["x"]}] * 2,
            "row 1: field 'id': duplicate id 'a'",
        ),
    ],
)
def test_stage_reads_check_columns_types_answers_and_ids(tmp_path, tiny_model_dir, rows, message):
    """A stage's input is checked when read: columns and types against the QA schema, answers a non-empty list of
    strings, unique ids. One line naming the file, the row and the field; exit 2; nothing written."""
    from loongrl.io import write_parquet

    filled = tmp_path / "filled.parquet"
    write_parquet(rows, filled)
    res = _keychain_cli(tmp_path, tiny_model_dir, filled, filled)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error (keychain): {filled}: ") and message in last
    assert not (tmp_path / "kc.parquet").exists()


def test_read_rows_names_a_non_utf8_file(tmp_path):
    from loongrl.io import read_rows

    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"q": "café"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=rf"{bad}: row byte 10: field '<file>': not UTF-8 text"):
        read_rows(bad)


def test_download_error_is_one_line(tmp_path):
    """A sha256 mismatch from the download CLI: one line naming the dataset, url and both digests; exit 2."""
    import subprocess
    import sys

    srv = _Server(_zip_payload())
    try:
        cmd = [sys.executable, "-m", "loongrl.download", "--dataset", "2wikimqa", "--url", srv.url]
        cmd += ["--files", "train.json", "--sha256", "0" * 64, "--retries", "1", "--out-dir", str(tmp_path)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        srv.close()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert re.search(rf"{re.escape(srv.url)}: sha256 [0-9a-f]{{64}}, but the config pins 0{{64}} \(the file", last)


def test_unpinned_download_warns_with_its_digest_and_key(tmp_path, caplog):
    """No pin: the download is kept, and the log names its sha256 and the config key to set (plain http said)."""
    srv = _Server(_zip_payload())
    try:
        with caplog.at_level("WARNING"):
            m = download.download_dataset(
                "2wikimqa", srv.url, ["train.json"], tmp_path, retries=1, pin_key="raw_qa.downloads.2wikimqa.sha256"
            )
    finally:
        srv.close()
    assert m["sha256_pinned"] is None and (tmp_path / "train.json").exists()
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert f"is not pinned: its sha256 is {m['sha256']}; set config key 'raw_qa.downloads.2wikimqa.sha256'" in msg
    assert "(fetched over plain http)" in msg


def test_strict_downloads_refuse_an_unpinned_file_in_one_line(tmp_path):
    """strict_downloads (the rules pass --strict): an unpinned download is an error naming the key, exit 2, and
    nothing of it is kept."""
    import subprocess
    import sys

    srv = _Server(_zip_payload())
    try:
        cmd = [sys.executable, "-m", "loongrl.download", "--dataset", "2wikimqa", "--url", srv.url, "--files"]
        cmd += ["train.json", "--pin-key", "raw_qa.downloads.2wikimqa.sha256", "--strict", "--retries", "1"]
        res = subprocess.run([*cmd, "--out-dir", str(tmp_path)], capture_output=True, text=True, check=False)
    finally:
        srv.close()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "set config key 'raw_qa.downloads.2wikimqa.sha256' to it" in last and "strict_downloads" in last
    assert list(tmp_path.iterdir()) == []


def test_book_downloads_are_checked_against_their_pins(tmp_path, monkeypatch):
    """Gutenberg books (retrieval.gutenberg_sha256 / eval.haystack_sha256): a pinned id that matches is kept, one
    that does not is an error naming the id's key and removed; strict refuses an unpinned id."""
    from loongrl import books

    payload = b"It was a dark and stormy night.\n"
    srv = _Server(payload)
    monkeypatch.setattr(books, "GUTENBERG_URL", srv.url + "?id={id}")
    good = hashlib.sha256(payload).hexdigest()
    try:
        books.download_books([84], tmp_path / "a", pins={"84": good}, pin_key="retrieval.gutenberg_sha256")
        assert (tmp_path / "a/pg84.txt").read_bytes() == payload
        with pytest.raises(download.DownloadError, match=r"config key 'retrieval.gutenberg_sha256.84' pins 0{64}"):
            books.download_books([84], tmp_path / "b", pins={"84": "0" * 64}, pin_key="retrieval.gutenberg_sha256")
        assert not (tmp_path / "b/pg84.txt").exists()
        with pytest.raises(download.DownloadError, match="strict_downloads"):
            books.download_books([11], tmp_path / "c", pin_key="eval.haystack_sha256", strict=True)
    finally:
        srv.close()
