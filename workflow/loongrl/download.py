"""Downloads of official data files: retries, atomic writes, pinned checksums, archive members, a manifest.

Only download rules (Snakemake ``localrule``s, run on the login node) call this; every other job reads local files.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import logging
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loongrl.cli import run, setup_logging
from loongrl.io import StageError, atomic_path, write_json

log = logging.getLogger(__name__)


class DownloadError(StageError):
    """A download failed after all retries, or its checksum did not match the pinned one."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, *, retries: int = 3, backoff: float = 2.0, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` (atomically) with retries; return the sha256 of what was written."""
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with atomic_path(dest) as tmp:
                req = urllib.request.Request(url, headers={"User-Agent": "loongrl-pipeline"})
                with urllib.request.urlopen(req, timeout=timeout) as resp, tmp.open("wb") as out:
                    shutil.copyfileobj(resp, out, length=1 << 20)
            return _sha256(dest)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last = exc
            log.warning("download %s failed (attempt %d/%d): %s", url, attempt, retries, exc)
            if attempt < retries:
                time.sleep(backoff * attempt)
    raise DownloadError(f"could not download {url} after {retries} attempts: {last}")


@contextlib.contextmanager
def _archive_members(blob: Path) -> Iterator[list[tuple[str, Any]] | None]:
    """(base name, opener) of every file in a tar or zip archive; None when ``blob`` is not an archive."""
    if tarfile.is_tarfile(blob):
        with tarfile.open(blob) as tf:
            yield [(Path(m.name).name, lambda m=m: tf.extractfile(m)) for m in tf.getmembers() if m.isfile()]
    elif zipfile.is_zipfile(blob):
        with zipfile.ZipFile(blob) as zf:
            yield [(Path(n).name, lambda n=n: zf.open(n)) for n in zf.namelist()]
    else:
        yield None


def check_pin(url: str, digest: str, *, pinned: str | None, pin_key: str | None, strict: bool) -> None:
    """The fetched file's ``digest`` against the config's pin: a mismatch is an error; no pin is a warning that
    prints the digest and the key to set, or, with ``strict_downloads``, an error. One line each, naming the key."""
    key = f"config key '{pin_key}'" if pin_key else "the config"
    if pinned and digest != pinned:
        raise DownloadError(f"{url}: sha256 {digest}, but {key} pins {pinned} (the file changed or was tampered with)")
    if not pinned:
        msg = f"{url} is not pinned: its sha256 is {digest}; set {key} to it after checking the file"
        if strict:
            raise DownloadError(f"{msg} (strict_downloads: true refuses unpinned downloads)")
        log.warning("%s%s", msg, " (fetched over plain http)" if url.startswith("http://") else "")


def download_dataset(
    dataset: str,
    url: str,
    files: list[str],
    out_dir: Path,
    *,
    sha256: str | None = None,
    retries: int = 3,
    pin_key: str | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Fetch one dataset's official file (or zip) into ``out_dir`` and return its manifest.

    A zip or tar archive is unpacked, keeping the members whose base name matches one of ``files`` (glob patterns).
    The file is checked against its pin (``check_pin``) before anything is unpacked.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    blob = out_dir / ".download"
    digest = fetch(url, blob, retries=retries)
    try:
        check_pin(url, digest, pinned=sha256, pin_key=pin_key, strict=strict)
    except DownloadError:
        blob.unlink()
        raise
    kept: list[str] = []
    with _archive_members(blob) as members:
        for base, open_member in members or []:
            if base and any(fnmatch.fnmatch(base, pat) for pat in files):
                with open_member() as src, atomic_path(out_dir / base) as tmp, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                kept.append(base)
    if members is None:
        blob.replace(out_dir / files[0])
        kept.append(files[0])
    else:
        blob.unlink()
    if not kept:
        raise DownloadError(f"{dataset}: {url} contained no file matching {files}")
    manifest = {
        "dataset": dataset,
        "url": url,
        "sha256": digest,
        "sha256_pinned": sha256,
        "files": {name: _sha256(out_dir / name) for name in sorted(kept)},
    }
    write_json(manifest, out_dir / "MANIFEST.json")
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.download", description=__doc__)
    ap.add_argument("--dataset", required=True, help="a label for the manifest and messages")
    ap.add_argument("--url", required=True)
    ap.add_argument("--files", nargs="+", required=True)
    ap.add_argument("--sha256", default=None)
    ap.add_argument("--pin-key", default=None, help="the config key that pins this download (named in messages)")
    ap.add_argument("--strict", action="store_true", help="an unpinned download is an error (strict_downloads)")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--out-dir", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    manifest = download_dataset(
        args.dataset,
        args.url,
        args.files,
        args.out_dir,
        sha256=args.sha256 or None,
        retries=args.retries,
        pin_key=args.pin_key,
        strict=args.strict,
    )
    log.info("downloaded %s: %s", args.dataset, manifest)


if __name__ == "__main__":
    run(main)
