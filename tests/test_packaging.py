"""The container and scale-out files: what can be checked without a Docker engine.

No Docker runs on these machines, so the Dockerfile is checked for what it
promises, and its install step is replayed here: the files it COPYs, installed
(not editable) into a clean virtual environment, then the commands the image
runs. docker-compose.yml and configs/prefect.yaml are checked for the services
and deployments the README describes.
"""

from __future__ import annotations

import pytest

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import yaml

from helpers import REPO

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(l for l in DOCKERFILE.splitlines() if not l.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, re.M)]


def test_dockerfile_bakes_models_in_runs_as_non_root_serves_and_checks_health():
    steps = _instructions()
    kinds = [k for k, _ in steps]
    base = next(a for k, a in steps if k == "FROM")
    assert re.match(r"python:3\.(1[1-9])", base)
    run = " ".join(a for k, a in steps if k == "RUN")
    assert "pip install ." in run and "assetline models pull" in run and "assetline models verify" in run
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")  # nothing runs as root after
    assert "HEALTHCHECK" in kinds and "/health" in next(a for k, a in steps if k == "HEALTHCHECK")
    cmd = next(a for k, a in reversed(steps) if k == "CMD")
    assert '"assetline", "serve"' in cmd and '"0.0.0.0"' in cmd
    for k, a in steps:
        if k == "COPY":
            for source in a.split()[:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repo"


def test_the_image_install_step_works_in_a_clean_venv(tmp_path, pulled_models):
    """`pip install .` of exactly what the Dockerfile copies, then `assetline models verify`, from elsewhere."""
    src = tmp_path / "src"
    src.mkdir()
    for k, a in _instructions():
        if k == "COPY":
            *sources, _ = a.split()
            for source in sources:
                path = REPO / source
                if path.is_dir():
                    shutil.copytree(path, src / source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                else:
                    shutil.copy(path, src / source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    # Dependencies come from the test environment (tests run offline); assetline itself does not.
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", str(src)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "assetline"), *args], capture_output=True, text=True, cwd=tmp_path, timeout=300)

    where = subprocess.run([str(python), "-c", "import assetline, pathlib; p = pathlib.Path(assetline.__file__).parent; "
                            "print(p); print((p / 'fonts/ttf/DejaVuSans.ttf').is_file(), (p / 'demo_data/speech.wav').is_file())"],
                           capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    location, data = where.stdout.split("\n")[:2]
    assert Path(location).is_relative_to(site), location  # the installed copy, not the checkout
    assert data == "True True"  # fonts and demo media ship in the package
    assert run("--version").stdout.startswith("assetline ")
    verified = run("models", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert run("serve", "--help").returncode == 0


def test_compose_has_server_on_postgres_a_worker_and_the_watcher():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "server", "worker", "watcher"} <= set(services)
    assert "postgresql+asyncpg://" in services["server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    worker = " ".join(services["worker"]["command"])
    assert "prefect worker start --pool process" in worker and "configs/prefect.yaml" in worker
    assert services["watcher"]["command"][:2] == ["assetline", "watch"]
    for name in ("worker", "watcher"):
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://server:4200/api"


def test_prefect_yaml_declares_the_same_deployments_as_serve():
    config = yaml.safe_load((REPO / "configs" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
    assert set(deployments) == {"process-asset", "batch-inbox"}
    process, batch = deployments["process-asset"], deployments["batch-inbox"]
    assert process["entrypoint"] == "assetline.flows.asset.process_asset"
    assert batch["entrypoint"] == "assetline.flows.batch.batch_inbox"
    assert all(d["work_pool"]["name"] == "process" for d in deployments.values())
    trigger = process["triggers"][0]
    assert trigger["expect"] == ["assetline.asset.arrived"]

    from assetline.config import Recipe
    from assetline.serve import arrival_trigger

    served = arrival_trigger()
    assert trigger["parameters"] == served.parameters and trigger["match"] == served.model_dump(mode="json")["match"]
    assert batch["schedules"][0]["cron"] == Recipe().inbox.batch_cron
