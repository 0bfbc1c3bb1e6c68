"""mercato.toolfetch: a pinned package is downloaded once, checked against its size and
SHA-256, and its binaries unpacked whole or not at all; what cannot be had says what to do.
The archive is played by a local HTTP server serving a package built here, so these tests
need no network (the real download is what `make observability-tools` does)."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mercato import toolfetch

VERSION_SCRIPT = "#!/bin/sh\necho '{name}, version test'\n"


def ar_archive(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out.write(header.encode())
        out.write(data + (b"\n" if len(data) % 2 else b""))
    return out.getvalue()


def debian_package(binaries: dict[str, str]) -> bytes:
    """A .deb as Debian builds it: debian-binary, control.tar.xz, data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, text in binaries.items():
            body = text.encode()
            info = tarfile.TarInfo(f"./usr/bin/{name}")
            info.size, info.mode = len(body), 0o755
            tar.addfile(info, io.BytesIO(body))
    return ar_archive({"debian-binary": b"2.0\n", "control.tar.xz": b"",
                       "data.tar.xz": data.getvalue()})


@pytest.fixture
def archive() -> Iterator[dict[str, bytes]]:
    """path -> bytes, served over HTTP; yields the dict (tests fill it) with its base URL."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    files["base"] = f"http://127.0.0.1:{server.server_address[1]}".encode()
    try:
        yield files
    finally:
        server.shutdown()


def pin(monkeypatch: pytest.MonkeyPatch, archive: dict[str, bytes], package: bytes, *,
        sha256: str | None = None) -> None:
    archive["/prometheus.deb"] = package
    artifact = toolfetch.Artifact(archive["base"].decode() + "/prometheus.deb", len(package),
                                  sha256 or hashlib.sha256(package).hexdigest())
    monkeypatch.setattr(toolfetch, "PROMETHEUS", {"x86_64": artifact})
    monkeypatch.setattr(toolfetch.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(toolfetch.sys, "platform", "linux")
    monkeypatch.delenv(toolfetch.ENV_DIR, raising=False)


def package() -> bytes:
    return debian_package({n: VERSION_SCRIPT.format(name=n) for n in toolfetch.BINARIES})


def test_the_pinned_package_is_unpacked_once(monkeypatch: pytest.MonkeyPatch,
                                             archive: dict[str, bytes], tmp_path: Path) -> None:
    pin(monkeypatch, archive, package())
    tools = toolfetch.ensure_prometheus(tmp_path / "prometheus", progress=False)
    assert tools.promtool.read_text().startswith("#!/bin/sh")
    assert tools.prometheus.stat().st_mode & 0o111
    del archive["/prometheus.deb"]  # a second call does not download again
    assert toolfetch.ensure_prometheus(tmp_path / "prometheus", progress=False) == tools


def test_a_package_that_is_not_the_pinned_one_is_refused_and_nothing_is_left(
        monkeypatch: pytest.MonkeyPatch, archive: dict[str, bytes], tmp_path: Path) -> None:
    pin(monkeypatch, archive, package(), sha256="0" * 64)
    with pytest.raises(toolfetch.ToolUnavailable, match="not the pinned package"):
        toolfetch.ensure_prometheus(tmp_path / "prometheus", progress=False)
    assert not (tmp_path / "prometheus").exists()
    assert list(tmp_path.iterdir()) == []  # no half-unpacked directory either


def test_a_package_gone_from_the_archive_says_to_pin_a_newer_one(
        monkeypatch: pytest.MonkeyPatch, archive: dict[str, bytes], tmp_path: Path) -> None:
    pin(monkeypatch, archive, package())
    del archive["/prometheus.deb"]
    with pytest.raises(toolfetch.ToolUnavailable, match="pin a newer one"):
        toolfetch.ensure_prometheus(tmp_path / "prometheus", progress=False)


def test_binaries_that_do_not_run_here_are_refused(
        monkeypatch: pytest.MonkeyPatch, archive: dict[str, bytes], tmp_path: Path) -> None:
    pin(monkeypatch, archive, debian_package({n: "#!/bin/sh\nexit 3\n"
                                              for n in toolfetch.BINARIES}))
    with pytest.raises(toolfetch.ToolUnavailable, match="does not run here"):
        toolfetch.ensure_prometheus(tmp_path / "prometheus", progress=False)
    assert not (tmp_path / "prometheus").exists()


def test_a_machine_without_a_pinned_build_is_told_what_to_do(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(toolfetch.ENV_DIR, raising=False)
    monkeypatch.setattr(toolfetch.sys, "platform", "darwin")
    with pytest.raises(toolfetch.ToolUnavailable, match=toolfetch.ENV_DIR):
        toolfetch.ensure_prometheus(tmp_path / "prometheus", progress=False)
    # ... and with the variable set, its binaries are used as they are.
    own = tmp_path / "own"
    own.mkdir()
    for name in toolfetch.BINARIES:
        (own / name).write_text(VERSION_SCRIPT.format(name=name))
    monkeypatch.setenv(toolfetch.ENV_DIR, str(own))
    assert toolfetch.ensure_prometheus(progress=False).directory == own


def test_the_table_pins_both_architectures_by_hash() -> None:
    assert set(toolfetch.PROMETHEUS) == {"x86_64", "aarch64"}
    for machine, artifact in toolfetch.PROMETHEUS.items():
        assert toolfetch.PROMETHEUS_VERSION in artifact.url
        assert artifact.url.endswith({"x86_64": "_amd64.deb", "aarch64": "_arm64.deb"}[machine])
        assert len(artifact.sha256) == 64 and artifact.size > 1_000_000
