"""The container and scale-out files: what can be checked without a Docker engine.

No Docker runs on these machines, so the Dockerfile is checked for what it
promises, and its install step is replayed here: the files it COPYs, installed
(not editable) into a clean virtual environment, then the commands the image
runs. docker-compose.yml and configs/prefect.yaml are checked for the services
and deployments the README describes.
"""

from __future__ import annotations

import pytest

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import yaml

from helpers import REPO
from helpers.redis import Redis, high_availability_env

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


def test_compose_runs_the_tested_high_availability_set_up():
    """The processes and variables of tests/test_scale.py's high-availability cluster, as compose services."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "server", "server-b", "services", "worker", "watcher"} <= set(services)
    assert services["migrate"]["command"] == ["prefect", "server", "database", "upgrade", "-y"]
    for api in ("server", "server-b"):
        assert services[api]["command"][:3] == ["prefect", "server", "start"] and "--no-services" in services[api]["command"]
    assert services["services"]["command"] == ["prefect", "server", "services", "start"]
    assert services["server-b"]["depends_on"] == {"server": {"condition": "service_healthy"}}  # one at a time (block types)
    tested = high_availability_env(Redis(port=6379, password="x"))
    for name in ("migrate", "server", "server-b", "services"):
        env = services[name]["environment"]
        assert "postgresql+asyncpg://" in env["PREFECT_API_DATABASE_CONNECTION_URL"]
        for var, value in tested.items():  # the same modules; the Redis address as host + password secret, not a URL
            if var.endswith("_URL") and var.startswith("PREFECT_REDIS_"):
                prefix = var.removesuffix("_URL")
                assert env[f"{prefix}_HOST"] == "redis" and env[f"{prefix}_PASSWORD_FILE"] == "/run/secrets/redis_password", name
            elif var == "PREFECT_SERVER_DOCKET_URL":
                assert env[var] == "redis://:$${PREFECT_REDIS_MESSAGING_PASSWORD}@redis:6379/1", name
            else:
                assert env[var] == value, (name, var)
    worker = " ".join(services["worker"]["command"])
    assert "prefect worker start --pool process" in worker and "configs/prefect.yaml" in worker
    assert "assetline keys init" in worker  # one key for the cluster, made once: a work-pool run never makes its own
    assert services["watcher"]["command"][:2] == ["assetline", "watch"]
    assert services["worker"]["environment"]["PREFECT_API_URL"] == "http://server:4200/api"
    assert services["watcher"]["environment"]["PREFECT_API_URL"] == "http://server-b:4200/api"  # either API server


SECRET_VARS = ("PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_SERVER_DATABASE_PASSWORD",
               "PREFECT_REDIS_MESSAGING_PASSWORD", "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_PASSWORD", "PREFECT_SERVER_DOCKET_URL")


def test_compose_takes_the_auth_string_and_passwords_from_secrets_never_literals():
    text = (REPO / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert "prefect:prefect" not in text
    assert {"prefect_auth_string", "postgres_password", "redis_password"} <= set(compose["secrets"])
    assert all(set(secret) == {"file"} for secret in compose["secrets"].values())
    for name, service in services.items():
        for var, value in (service.get("environment") or {}).items():
            if "PASSWORD" in var or "AUTH_STRING" in var:  # a secret only ever by file, never its value
                assert var.endswith("_FILE") and str(value).startswith("/run/secrets/"), f"{name}: {var}={value}"
                assert str(value).removeprefix("/run/secrets/") in service["secrets"], f"{name}: {var} names no secret of its own"
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]  # the project's network only
    assert "--requirepass" in " ".join(services["redis"]["command"]) and "/run/secrets/redis_password" in " ".join(services["redis"]["command"])
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    server = services["server"]["environment"]
    assert "$${PREFECT_SERVER_DATABASE_PASSWORD}@" in server["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "PREFECT_SERVER_API_AUTH_STRING_FILE" in server
    assert {"events", "flow_runs"} <= set(server["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"].split(","))
    for name in ("worker", "watcher"):
        assert services[name]["environment"]["PREFECT_API_AUTH_STRING_FILE"] == "/run/secrets/prefect_auth_string"


def test_the_image_entrypoint_turns_secret_files_into_the_variables_prefect_reads(tmp_path):
    entrypoint = next(a for k, a in _instructions() if k == "ENTRYPOINT")
    script = REPO / "configs" / "docker-entrypoint.sh"
    assert str(script.relative_to(REPO)) in entrypoint
    (tmp_path / "auth").write_text("admin:from-the-secret\n")
    (tmp_path / "pg").write_text("pg-from-the-secret\n")
    (tmp_path / "redis").write_text("0123abcd\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_VARS)}
    env.update(PREFECT_API_AUTH_STRING_FILE=str(tmp_path / "auth"), PREFECT_SERVER_API_AUTH_STRING_FILE=str(tmp_path / "auth"),
               PREFECT_SERVER_DATABASE_PASSWORD_FILE=str(tmp_path / "pg"),
               PREFECT_REDIS_MESSAGING_PASSWORD_FILE=str(tmp_path / "redis"),
               PREFECT_SERVER_DOCKET_URL="redis://:${PREFECT_REDIS_MESSAGING_PASSWORD}@redis:6379/1",
               PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://prefect:${PREFECT_SERVER_DATABASE_PASSWORD}@postgres:5432/prefect")  # fmt: skip
    read = ("from prefect.settings import Settings; s = Settings(); "
            "print(s.api.auth_string.get_secret_value(), s.server.api.auth_string.get_secret_value(), "
            "s.server.database.connection_url.get_secret_value(), s.server.docket.url); "
            "from prefect_redis.client import RedisMessagingSettings; print(RedisMessagingSettings().password)")  # fmt: skip
    done = subprocess.run(["sh", str(script), sys.executable, "-c", read], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["admin:from-the-secret", "admin:from-the-secret",
                                   "postgresql+asyncpg://prefect:pg-from-the-secret@postgres:5432/prefect",
                                   "redis://:0123abcd@redis:6379/1", "0123abcd"]  # fmt: skip
    missing = subprocess.run(["sh", str(script), "true"], capture_output=True, text=True, timeout=60,
                             env={**env, "PREFECT_API_AUTH_STRING_FILE": str(tmp_path / "absent")})  # fmt: skip
    assert missing.returncode != 0 and "cannot read the secret for PREFECT_API_AUTH_STRING" in missing.stderr


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
