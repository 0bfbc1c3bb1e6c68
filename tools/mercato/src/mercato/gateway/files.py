"""Writing Envoy's files: YAML with a stable layout, replaced atomically, only when changed.

Envoy watches the directory for renames and ignores in-place edits, and every rename makes it
re-read its files; an unchanged document is therefore never rewritten.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml


def dump(doc: Any) -> str:
    # sort_keys=False keeps the order the renderer chose, which is itself deterministic.
    return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100))


def write_if_changed(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` by temp file + rename; False if it already held it."""
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file must live in the same directory: rename is atomic only within a file
    # system, and Envoy reacts to the move into its watched directory.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def write_doc(path: Path, doc: Any) -> bool:
    return write_if_changed(path, dump(doc))
