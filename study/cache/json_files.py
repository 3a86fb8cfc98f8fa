"""Small JSON results kept beside the activation cache (probe scores, domain gaps): written atomically, and a
read-only or full cache only costs the recomputation next time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_quietly(path: Path, payload: bytes) -> None:
    """Store ``payload`` at ``path`` atomically (written beside it, then renamed); write errors are ignored: a cache
    entry that could not be kept only costs the recomputation next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    except OSError:
        pass


def cache_json(path: Path, value: Any) -> None:
    """Store ``value`` as JSON at ``path`` (``write_quietly``)."""
    write_quietly(path, json.dumps(value).encode())


def cached_json(path: Path) -> Any | None:
    """The JSON stored at ``path``, or None when it is missing or unreadable (then recompute and rewrite)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
