"""deploy/Dockerfile: hadolint-clean, and its final stage is what the issue asks of an image:
pinned from the lock, non-root, a health check, no build tools."""

from __future__ import annotations

import re
import subprocess

import pytest
from deploy_manifests import BIN, DEPLOY, REPO, dockerfile_stages, exec_form, final_stage, services


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run([str(BIN / "hadolint"), "--no-color", str(DEPLOY / "Dockerfile")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_environment_is_installed_from_the_lock_for_one_service() -> None:
    syncs = [r for stage in dockerfile_stages().values() for r in stage.all("RUN")
             if "uv sync" in r]
    assert len(syncs) == 1
    flags = syncs[0].split("uv sync", 1)[1].split()
    assert "--frozen" in flags and "--no-dev" in flags
    assert flags[flags.index("--package") + 1] == '"$SERVICE"'


def test_the_final_stage_runs_as_a_user_with_a_health_check_and_no_build_tools() -> None:
    stages = dockerfile_stages()
    final = final_stage()
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {user}: a numeric non-root uid"
    (health,) = final.all("HEALTHCHECK")
    assert exec_form(health.split(" CMD ", 1)[1]) == ["python", "/app/deploy/healthcheck.py"]
    assert final.base == stages["build"].base, "runs on the interpreter the venv was built for"
    copies = " ".join(final.all("COPY"))
    assert "--from=uv" not in copies and "--from=build /app/.venv" in copies
    runs = " ".join(final.all("RUN"))
    assert not re.search(r"apt-get|apk|pip install|uv ", runs), runs


@pytest.mark.parametrize("service", services())
def test_every_service_builds_with_this_dockerfile(service: str) -> None:
    """The build needs services/<name> with a package of that name runnable with -m, and
    its migrations beside it (MIGRATIONS_DIR is services/<name>/migrations)."""
    folder = REPO / "services" / service
    assert (folder / "src" / service / "__main__.py").is_file()
    assert (folder / "migrations" / "env.py").is_file()
    copies = " ".join(final_stage().all("COPY"))
    assert "/app/${PACKAGE_DIR}" in copies  # PACKAGE_DIR defaults to services/${SERVICE}
    assert "ARG PACKAGE_DIR=services/${SERVICE}" in (DEPLOY / "Dockerfile").read_text()
