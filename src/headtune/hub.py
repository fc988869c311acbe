"""Knowing, quickly, whether the Hugging Face Hub can be reached.

Without this check an offline `from_pretrained("distilbert-base-uncased")` spends
about 45 seconds in retries before it fails; a user deserves the answer at once.
"""
from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse


def looks_local(name: str) -> bool:
    """A name the user meant as a path on disk rather than a Hub repository id (`name` or `owner/name`)."""
    return os.path.exists(name) or name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 \
        or "\\" in name


def hub_offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the Hub endpoint opens within `timeout` seconds."""
    if hub_offline_mode():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def offline_message(kind: str, name: str) -> str:
    # a mistyped local folder looks like a Hub name: say that no such folder exists either
    return (f"cannot reach the Hugging Face Hub to download {kind} '{name}', it is not in the local cache, and there "
            f"is no local folder '{name}'; work offline with a local model folder (--model PATH) and a local dataset "
            f"folder (--dataset PATH)")


def cached_file(repo: str, filename: str, revision: str | None = None, download: bool = True) -> str | None:
    """A file of a Hub repository: downloaded when the Hub is reachable (and `download`), else from the local
    cache; None when the repository has no such file or it cannot be had."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, revision=revision,
                               local_files_only=not (download and hub_reachable()))
    except Exception:  # missing entry, missing repo, offline and not cached: all mean "not available"
        return None
