"""Pinned binaries that no Python wheel carries, fetched from Debian's package archive.

Prometheus (``prometheus`` and ``promtool``) is not on PyPI; Debian's package of it holds
both as Go binaries that need only the C library. ``ensure_prometheus`` downloads the
package for this machine once, checks its size and SHA-256 against the table below, and
unpacks the two binaries into ``.tools/prometheus/`` (no root, no dpkg: a ``.deb`` is an
``ar`` archive holding ``data.tar.xz``). The tests run ``promtool`` over the alert rules;
the local console may run ``prometheus`` from the same place.

Standard library only, so ``make`` can run it before anything else:
``python -m mercato.toolfetch prometheus [--dest DIR]`` prints the directory.
On a machine the table has no build for, set ``MERCATO_PROMETHEUS_DIR`` to a directory
holding ``promtool`` and ``prometheus`` (2.42 or newer) installed by other means.

To move to another release: put its version, and each architecture's URL, size and SHA-256
in ``PROMETHEUS`` (Debian's archive keeps a package only while a release refers to it, so a
security update can replace this one; the error then says so).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
DEFAULT_DIR = REPO / ".tools" / "prometheus"
BINARIES = ("promtool", "prometheus")
ENV_DIR = "MERCATO_PROMETHEUS_DIR"


@dataclass(frozen=True)
class Artifact:
    url: str
    size: int
    sha256: str


_POOL = "http://deb.debian.org/debian/pool/main/p/prometheus"
PROMETHEUS_VERSION = "2.42.0+ds-5+deb12u1"  # Debian 12 (bookworm)
# platform.machine() -> the package for it. The archive is plain HTTP; the pinned SHA-256
# is what makes the download trustworthy.
PROMETHEUS: dict[str, Artifact] = {
    "x86_64": Artifact(f"{_POOL}/prometheus_{PROMETHEUS_VERSION}_amd64.deb", 19_257_088,
                       "81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55"),
    "aarch64": Artifact(f"{_POOL}/prometheus_{PROMETHEUS_VERSION}_arm64.deb", 16_826_400,
                        "ca131aa102390083398afbc80be9c8dd1dda78f9f92154fc00df8f7f1f4556e9"),
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


class ToolUnavailable(RuntimeError):
    """The binaries cannot be had here; the message says what to do."""


@dataclass(frozen=True)
class PrometheusTools:
    directory: Path

    @property
    def promtool(self) -> Path:
        return self.directory / "promtool"

    @property
    def prometheus(self) -> Path:
        return self.directory / "prometheus"


def _stamp(directory: Path) -> Path:
    return directory / ".version"


def _artifact_for_this_machine() -> Artifact:
    machine = platform.machine().lower()
    machine = _ALIASES.get(machine, machine)
    if sys.platform != "linux" or machine not in PROMETHEUS:
        raise ToolUnavailable(
            f"no pinned Prometheus build for {sys.platform}/{machine} (there are: linux/"
            f"{', linux/'.join(PROMETHEUS)}); install Prometheus 2.42 or newer and set "
            f"{ENV_DIR} to the directory holding promtool and prometheus")
    return PROMETHEUS[machine]


def _download(artifact: Artifact, out: io.BufferedWriter, progress: bool) -> None:
    try:
        response = urllib.request.urlopen(artifact.url, timeout=60)  # noqa: S310 - pinned URL
    except urllib.error.HTTPError as exc:
        hint = (" (the archive no longer holds this package: pin a newer one in "
                "mercato/toolfetch.py)" if exc.code == 404 else "")
        raise ToolUnavailable(f"downloading {artifact.url} failed: HTTP {exc.code}{hint}") \
            from exc
    except OSError as exc:
        raise ToolUnavailable(f"downloading {artifact.url} failed: {exc}; is Debian's "
                              "package archive reachable from here?") from exc
    digest, done, shown = hashlib.sha256(), 0, -1
    with response:
        while chunk := response.read(1 << 16):
            digest.update(chunk)
            out.write(chunk)
            done += len(chunk)
            percent = done * 100 // artifact.size
            if progress and percent // 10 != shown:
                shown = percent // 10
                print(f"    {done / 2**20:5.1f} of {artifact.size / 2**20:.1f} MiB",
                      file=sys.stderr, flush=True)
    if done != artifact.size or digest.hexdigest() != artifact.sha256:
        raise ToolUnavailable(
            f"{artifact.url} is not the pinned package: {done} bytes, sha256 "
            f"{digest.hexdigest()} (expected {artifact.size} bytes, {artifact.sha256})")


def _ar_member(deb: Path, prefix: str) -> bytes:
    """The first member of an ``ar`` archive whose name starts with ``prefix``."""
    with deb.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ToolUnavailable(f"{deb} is not a Debian package")
        while header := f.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            data = f.read(size)
            if size % 2:
                f.read(1)  # members are aligned on two bytes
            if name.startswith(prefix):
                return data
    raise ToolUnavailable(f"{deb} holds no {prefix}*")


def _unpack(deb: Path, directory: Path) -> None:
    data = _ar_member(deb, "data.tar.xz")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as tar:
        for name in BINARIES:
            member = tar.getmember(f"./usr/bin/{name}")
            source = tar.extractfile(member)
            assert source is not None
            target = directory / name
            with target.open("wb") as out:
                shutil.copyfileobj(source, out)
            target.chmod(0o755)


def _check_runs(tools: PrometheusTools) -> None:
    try:
        subprocess.run([str(tools.promtool), "--version"], capture_output=True, check=True,  # noqa: S603 - our own binary
                       timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolUnavailable(
            f"{tools.promtool} does not run here ({exc}): Debian's build needs glibc; set "
            f"{ENV_DIR} to a directory with promtool and prometheus built for this system")\
            from exc


def ensure_prometheus(directory: Path | None = None, *, progress: bool = True) -> PrometheusTools:
    """The directory with ``promtool`` and ``prometheus``, fetched and unpacked on first use.
    Raises ``ToolUnavailable`` with what to do when that cannot be done here."""
    if override := os.environ.get(ENV_DIR):
        tools = PrometheusTools(Path(override))
        if not all((tools.directory / b).is_file() for b in BINARIES):
            raise ToolUnavailable(f"{ENV_DIR}={override} holds no promtool and prometheus")
        return tools
    directory = directory or DEFAULT_DIR
    tools = PrometheusTools(directory)
    stamp = _stamp(directory)
    if stamp.is_file() and stamp.read_text().strip() == PROMETHEUS_VERSION and all(
            (directory / b).is_file() for b in BINARIES):
        return tools
    artifact = _artifact_for_this_machine()
    if progress:
        print(f"==> fetching Prometheus {PROMETHEUS_VERSION} (promtool) from Debian's "
              f"archive into {directory}/", file=sys.stderr, flush=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".prometheus-") as tmp:
        deb = Path(tmp) / "prometheus.deb"
        with deb.open("wb") as out:
            _download(artifact, out, progress)
        staged = Path(tmp) / "bin"
        staged.mkdir()
        _unpack(deb, staged)
        _stamp(staged).write_text(PROMETHEUS_VERSION + "\n")
        _check_runs(PrometheusTools(staged))
        # Replace the whole directory at once: a half-written one is never used.
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(directory)
        staged.rename(directory)
    return tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mercato.toolfetch",
                                     description="fetch pinned binaries PyPI does not carry")
    parser.add_argument("tool", choices=["prometheus"])
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"where to put them (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    try:
        tools = ensure_prometheus(args.dest)
    except ToolUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(tools.directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
