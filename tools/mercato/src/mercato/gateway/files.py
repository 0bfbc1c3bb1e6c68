"""Writing Envoy's files: YAML with a stable layout, replaced atomically, only when changed.

Envoy watches the directory for renames and ignores in-place edits, and every rename makes it
re-read its files; an unchanged document is therefore never rewritten.
"""

from __future__ import annotations

import contextlib
import copy
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


# What write_doc last left in each file, with the file's identity then. The control plane
# offers every cluster's endpoints every 2 s; rendering them to YAML only to find the file
# unchanged was a third of the supervisor's CPU on an idle platform (ADR 0049).
_written: dict[Path, tuple[Any, tuple[int, int, int]]] = {}


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def write_doc(path: Path, doc: Any) -> bool:
    """``write_if_changed`` for a document: not even rendered when it equals the one this
    process last wrote there and the file is still the one it wrote."""
    known = _written.get(path)
    if known is not None and known[0] == doc and known[1] == _identity(path):
        return False
    changed = write_if_changed(path, dump(doc))
    identity = _identity(path)
    if identity is not None:
        _written[path] = (copy.deepcopy(doc), identity)
    return changed
