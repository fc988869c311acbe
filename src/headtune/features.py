"""Texts -> token ids -> one frozen backbone pass -> the features the head reads.

The backbone is frozen, so a text's features never change: they are computed once per
split, in length-sorted batches filled up to a token budget (so almost no compute is
spent on padding), and handed back in the texts' original order.

The texts are ordered by their length in characters (known without tokenizing) and cut into
shards, the unit the on-disk cache commits, so an interrupted pass resumes; a shard is tokenized
when its turn comes (a resumed pass tokenizes only what it computes) and batched by its exact token
lengths.

(Measured on an H100 and dropped, benchmarks/README.md: tokenizing the next shard on another thread
while one runs, and running every batch shape once on dummy batches meanwhile, to hide the tokenizing
and each new shape's one-time setup. Beside a tokenizer using every core, the thread feeding the GPU
slowed down by as much as it hid.)
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import FeatureCache, cache_key, texts_digest
from .config import FeatureConfig
from .errors import HeadtuneError

log = logging.getLogger(__name__)

SHARD_TENSORS = {"features", "index", "lengths", "truncated"}


@dataclass
class Tokenized:
    ids: list[list[int]]
    truncated: np.ndarray  # bool per text: longer than max_length, cut


@dataclass
class PassStats:
    texts: int
    real_tokens: int  # tokens of the texts after truncation
    padded_tokens: int  # tokens the backbone processed, padding included (0 when all came from the cache)
    truncated: int
    cached_shards: int
    computed_shards: int
    seconds: float
    tokenize_seconds: float = 0.0  # of `seconds`, tokenizing

    @classmethod
    def combine(cls, parts: list[PassStats]) -> PassStats:
        """One pass over a split from its parts over disjoint sets of its shards, run side by side (fill_cache's
        statistics): the counts add up; the time is the longest part's."""
        totals = {name: sum(getattr(p, name) for p in parts) for name in
                  ("texts", "real_tokens", "padded_tokens", "truncated", "cached_shards", "computed_shards")}
        longest = {name: max((getattr(p, name) for p in parts), default=0.0)
                   for name in ("seconds", "tokenize_seconds")}
        return cls(**totals, **longest)


# A tokenizer splits the whole text before truncation drops all but max_length tokens: a 30 MB line took GBs and
# tens of seconds. Only the end truncation keeps is read, up to this many characters per token kept; a token is
# rarely over 20 characters, so only a text padded with thousands of spaces or control characters loses tokens.
CHARS_PER_TOKEN = 1000


def tokenize(tokenizer, texts: list[str], max_length: int) -> Tokenized:
    """Token ids without padding, truncated to max_length, and which texts were cut."""
    texts, shortened = _shortened(texts, max_length * CHARS_PER_TOKEN, getattr(tokenizer, "truncation_side", "right"))
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    if getattr(enc, "encodings", None):  # fast tokenizers keep what truncation cut off
        truncated = np.array([bool(e.overflowing) for e in enc.encodings], dtype=bool)
    else:  # a text of exactly max_length tokens is not cut: compare with its untruncated length
        full = tokenizer(texts, truncation=False)["input_ids"]
        truncated = np.array([len(ids) > max_length for ids in full], dtype=bool)
    return Tokenized(list(enc["input_ids"]), truncated | shortened)


def _shortened(texts: list[str], limit: int, side: str) -> tuple[list[str], np.ndarray]:
    """Each text longer than `limit` characters cut to the `limit` characters at the end truncation keeps."""
    cut = np.fromiter((len(t) > limit for t in texts), dtype=bool, count=len(texts))
    if not cut.any():
        return texts, cut
    keep = (lambda t: t[-limit:]) if side == "left" else (lambda t: t[:limit])
    return [keep(t) if len(t) > limit else t for t in texts], cut


def length_order(lengths: np.ndarray) -> np.ndarray:
    """Indices from longest to shortest; ties keep their original order, so the order is reproducible."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def padded_width(longest: int, multiple: int = 1, cap: int | None = None) -> int:
    """A batch's padded length: its longest row, rounded up to a multiple of `multiple`, but not past `cap` (the
    --max-length: beyond the model's positions, a padded batch cannot even run)."""
    return max(longest, min(-(-longest // multiple) * multiple, cap or math.inf))


def plan_batches(sorted_lengths: np.ndarray, max_tokens: int, multiple: int = 1,
                 cap: int | None = None) -> list[tuple[int, int]]:
    """Split lengths sorted longest-first into (start, end) batches of at most max_tokens padded tokens.

    The first row of a batch is its longest, so rows x its padded width is the padded size; with
    widths rounded to `multiple`, all full batches of one width have the same shape.
    A text longer than the budget still gets a batch of its own.
    """
    batches, start, n = [], 0, len(sorted_lengths)
    while start < n:
        rows = max(1, max_tokens // max(1, padded_width(int(sorted_lengths[start]), multiple, cap)))
        batches.append((start, min(n, start + rows)))
        start += rows
    return batches


def shard_order(texts: list[str]) -> np.ndarray:
    """Text indices longest first by characters (ties: original order): the order shards are cut from.
    Character counts are known without tokenizing, so a shard can be tokenized while another one runs."""
    return length_order(np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)))


def plan_shard(token_lengths: np.ndarray, max_tokens: int, multiple: int = 1,
               cap: int | None = None) -> list[np.ndarray]:
    """A shard's batches: positions within the shard, sorted by exact token length (longest first), cut into
    batches of at most `max_tokens` padded tokens."""
    order = length_order(token_lengths)
    return [order[a:b] for a, b in plan_batches(token_lengths[order], max_tokens, multiple, cap)]


def collate(seqs: list[list[int]], pad_id: int, multiple: int = 1,
            cap: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence, rounded up to `multiple` (not past `cap`): (input_ids, attention_mask)."""
    width = padded_width(max(len(s) for s in seqs), multiple, cap)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(ids.shape, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HeadtuneError(f"--device {name} asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of the backbone pass; None means plain fp32; torch.qint8 stands for a backbone whose
    Linear layers are quantized to int8 (modeling.quantize_backbone), which runs without autocast.

    auto: bf16 on Ampere or newer GPUs, fp16 on older ones (T4, V100), fp32 on CPU, where
    bf16 autocast ran 6x slower than fp32 on this project's AVX2 CPUs (see README).
    """
    if precision == "fp32":
        return None
    if precision == "int8":
        if device.type != "cpu":
            raise HeadtuneError("--precision int8 (dynamic quantization) runs on the CPU only; on a GPU use "
                                "--precision bf16, or --device cpu")
        return torch.qint8
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def progress(**kwargs) -> tqdm:
    """A progress bar on a terminal, none when headtune logs warnings only (-q, and every process but the main
    one): the bar is no warning."""
    quiet = logging.getLogger("headtune").level > logging.INFO
    return tqdm(disable=True if quiet else None, leave=False, **kwargs)


def feature_key_parts(identity: dict, point: str, max_length: int, dtype: torch.dtype | None,
                      texts: list[str], shard_size: int) -> dict:
    """Everything that changes the features, and the shard size, which is the cache's layout (shard i
    holds the i-th slice of the sorted texts); head settings (lr, epochs, seed, ...) are deliberately absent.
    `point` names what the head reads (architectures.HeadPlan.point: the pooling, and whether frozen
    pretrained head parts apply).
    """
    return {**identity, "point": point, "max_length": max_length, "dtype": str(dtype or torch.float32),
            "texts": texts_digest(texts), "n": len(texts), "shard_size": shard_size}


def features_identity(identity: dict, truncation_side: str) -> dict:
    """The model's identity (modeling.identity) and which end its tokenizer cuts off a too-long text: what a
    text's features depend on besides the text, the pooling and the length. The model's body (the checkpoint
    without its head) depends on the identity alone."""
    return {**identity, "truncation_side": truncation_side}


# (input_ids, attention_mask) on the model's device -> the tensor the head reads, one row per text
Reader = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def run_backbone(reader: Reader, device: torch.device, ids: torch.Tensor, mask: torch.Tensor,
                 dtype: torch.dtype | None) -> torch.Tensor:
    if device.type == "cuda":  # pinned host memory lets the copy overlap the previous batch's compute
        ids, mask = ids.pin_memory().to(device, non_blocking=True), mask.pin_memory().to(device, non_blocking=True)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype in (torch.bfloat16, torch.float16) \
        else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        return reader(ids, mask).float()


def feature_cache(point: str, texts: list[str], *, max_length: int, cfg: FeatureConfig, identity: dict,
                  dtype: torch.dtype | None) -> FeatureCache | None:
    """The cache entry of these features (`cfg` resolved for the device), or None with --no-cache."""
    if cfg.no_cache:
        return None
    parts = feature_key_parts(identity, point, max_length, dtype, texts, cfg.shard_size)
    return FeatureCache(cfg.cache_dir, cache_key(parts), parts)


def cached_features(point: str, texts: list[str], *, device: torch.device, max_length: int, cfg: FeatureConfig,
                    identity: dict, dtype: torch.dtype | None) -> tuple[torch.Tensor, PassStats] | None:
    """The features, when every shard is in the cache; None otherwise. Needs no model, so a run whose
    features are all cached never loads (or imports the code of) the backbone."""
    start = time.perf_counter()
    cfg = cfg.for_device(device.type)
    cache = feature_cache(point, texts, max_length=max_length, cfg=cfg, identity=identity, dtype=dtype)
    n_shards = math.ceil(len(texts) / cfg.shard_size)
    if cache is None or not all(cache.has(i) for i in range(n_shards)):
        return None
    shards = {i: cache.load(i, SHARD_TENSORS) for i in range(n_shards)}
    if any(shard is None for shard in shards.values()):  # damaged: the full pass recomputes those shards
        return None
    return _assemble(shards, len(texts)), _stats(shards, {}, start)


def missing_shards(point: str, texts: list[str], *, device: torch.device, max_length: int, cfg: FeatureConfig,
                   identity: dict, dtype: torch.dtype | None, shards: Callable[[int], bool] | None = None
                   ) -> list[int]:
    """The indices of the shards `shards` selects (all when None) that the cache lacks whole (a damaged file is
    deleted): the shards fill_cache would compute. Needs no model."""
    cfg = cfg.for_device(device.type)
    cache = feature_cache(point, texts, max_length=max_length, cfg=cfg, identity=identity, dtype=dtype)
    wanted = _selected(len(texts), cfg.shard_size, shards)
    return wanted if cache is None else [i for i in wanted if cache.load(i, SHARD_TENSORS) is None]


def extract_features(reader: Reader, device: torch.device, point: str, tokenizer, texts: list[str], *,
                     max_length: int, cfg: FeatureConfig, identity: dict, dtype: torch.dtype | None,
                     split: str = "") -> tuple[torch.Tensor, PassStats]:
    """Features (len(texts), hidden) in the texts' order, from the cache where possible.

    `reader` runs the frozen backbone (in eval mode) on one batch on `device`; `point` names what it
    returns, for the cache key.
    """
    start = time.perf_counter()
    cfg = cfg.for_device(device.type)
    cache = feature_cache(point, texts, max_length=max_length, cfg=cfg, identity=identity, dtype=dtype)
    shards, timing = _pass(reader, device, tokenizer, texts, cache, cfg, max_length, dtype, split,
                           _selected(len(texts), cfg.shard_size, None))
    return _assemble(shards, len(texts)), _stats(shards, timing, start)


def fill_cache(reader: Reader | None, device: torch.device, point: str, tokenizer, texts: list[str], *,
               max_length: int, cfg: FeatureConfig, identity: dict, dtype: torch.dtype | None, split: str = "",
               shards: Callable[[int], bool] | None = None) -> PassStats:
    """Compute the shards `shards` selects (all when None) that the cache lacks, and store them; the statistics
    of the selected part of the pass (PassStats.combine adds up the parts of one split).

    The features stay in the cache, for whoever reads the whole split. `reader` and `tokenizer` may be None when
    missing_shards found nothing missing.
    """
    start = time.perf_counter()
    cfg = cfg.for_device(device.type)
    cache = feature_cache(point, texts, max_length=max_length, cfg=cfg, identity=identity, dtype=dtype)
    if cache is None:
        raise ValueError("fill_cache needs the feature cache (cfg.no_cache is set)")
    found, timing = _pass(reader, device, tokenizer, texts, cache, cfg, max_length, dtype, split,
                          _selected(len(texts), cfg.shard_size, shards))
    return _stats(found, timing, start)


def _selected(n_texts: int, shard_size: int, shards: Callable[[int], bool] | None) -> list[int]:
    return [i for i in range(math.ceil(n_texts / shard_size)) if shards is None or shards(i)]


def _pass(reader: Reader | None, device: torch.device, tokenizer, texts: list[str], cache: FeatureCache | None,
          cfg: FeatureConfig, max_length: int, dtype: torch.dtype | None, split: str, wanted: list[int]
          ) -> tuple[dict[int, dict[str, torch.Tensor]], dict]:
    """The shards `wanted`, read from the cache where whole, the others computed (and cached, with a cache):
    (shards, timing: padded tokens the backbone ran, shards computed, tokenizing seconds)."""
    order = shard_order(texts)
    rows_of = [order[s:s + cfg.shard_size] for s in range(0, len(texts), cfg.shard_size)]
    shards = {i: cache.load(i, SHARD_TENSORS) for i in wanted} if cache else {}
    missing = [i for i in wanted if shards.get(i) is None]
    timing = {"padded": 0, "computed": 0, "tokenize": 0.0}
    if not missing:
        return shards, timing
    if reader is None or tokenizer is None:
        raise ValueError(f"shards {missing} are not in the cache, and no backbone was given to compute them")
    pad_id = tokenizer.pad_token_id or 0
    bar = progress(total=sum(len(rows_of[i]) for i in missing), desc=f"backbone pass {split}".strip(), unit="text")

    for i in missing:
        # another run sharing the cache may have written this shard meanwhile: then it is used, not recomputed
        found = cache.load(i, SHARD_TENSORS) if cache and cache.has(i) else None
        if found is None:
            started = time.perf_counter()
            tok = tokenize(tokenizer, [texts[j] for j in rows_of[i]], max_length)
            timing["tokenize"] += time.perf_counter() - started
            found = _run_shard(reader, device, dtype, tok, rows_of[i], cfg, pad_id, timing, max_length)
            timing["computed"] += 1
            if cache:
                cache.save(i, found)
        shards[i] = found
        bar.update(len(rows_of[i]))
    bar.close()
    return shards, timing


def _run_shard(reader: Reader, device: torch.device, dtype, tok: Tokenized, rows: np.ndarray, cfg: FeatureConfig,
               pad_id: int, timing: dict, max_length: int) -> dict[str, torch.Tensor]:
    """One shard through the backbone: its tensors for the cache (rows in the order they ran)."""
    lengths = np.array([len(x) for x in tok.ids])
    chunks, positions = [], []
    for batch in plan_shard(lengths, cfg.max_tokens_per_batch, cfg.pad_to_multiple_of, max_length):
        ids, mask = collate([tok.ids[j] for j in batch], pad_id, cfg.pad_to_multiple_of, max_length)
        timing["padded"] += ids.numel()
        # no copy back per batch: on a GPU that would wait for each batch before queueing the next
        chunks.append(run_backbone(reader, device, ids, mask, dtype))
        positions.append(batch)
    within = np.concatenate(positions)
    return {"features": torch.cat(chunks).cpu(), "index": torch.as_tensor(rows[within], dtype=torch.int64),
            "lengths": torch.as_tensor(lengths[within], dtype=torch.int32),
            "truncated": torch.as_tensor(tok.truncated[within], dtype=torch.uint8)}


def _stats(shards: dict[int, dict[str, torch.Tensor]], timing: dict, start: float) -> PassStats:
    """The statistics of a pass (or of a part of one) that ended with `shards`."""
    texts = sum(len(s["lengths"]) for s in shards.values())
    real = sum(int(s["lengths"].sum()) for s in shards.values())
    truncated = sum(int(s["truncated"].sum()) for s in shards.values())
    computed = timing.get("computed", 0)
    return PassStats(texts, real, timing.get("padded", 0), truncated, len(shards) - computed, computed,
                     time.perf_counter() - start, round(timing.get("tokenize", 0.0), 3))


def _assemble(shards: dict[int, dict[str, torch.Tensor]], n: int) -> torch.Tensor:
    """Scatter each shard's rows back to the texts' original positions."""
    shape = next(iter(shards.values()))["features"].shape[1:]  # (hidden,), or (layers, hidden) for --depth auto
    out = torch.empty((n, *shape), dtype=torch.float32)
    seen = torch.zeros(n, dtype=torch.bool)
    for shard in shards.values():
        out[shard["index"]] = shard["features"]
        seen[shard["index"]] = True
    if not bool(seen.all()):  # only a tampered cache could do this; never train on uninitialised rows
        raise HeadtuneError(f"feature cache is inconsistent ({int((~seen).sum())} texts missing); "
                            f"delete it or pass --no-cache")
    return out
