"""Small shared helpers: content hashes, inter-process file locks and atomic file writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock


def stable_hash(obj: Any, length: int = 12) -> str:
    """A short hex digest of ``obj``'s canonical JSON (sorted keys): equal configs give equal keys."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed): one process at a time trains a shared artefact (a
    baseline, a pretrained source), the others wait and then reuse it. Released when the holder dies. ``filelock``
    takes ``flock`` on POSIX and ``msvcrt.locking`` on Windows (``fcntl`` alone made the package unimportable there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, unique to this writer, moved onto ``path`` when the block ends without
    error and removed otherwise. A reader never sees half a file, and writers of the same file in several processes
    at once (the feature and score caches of a parallel sweep) all succeed: the last one to finish wins, and for a
    content-keyed cache their contents are equal. The file is created by the writer, so it gets the umask's mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
