"""Shared fixtures: an isolated environment per test, and a real HTTP server speaking the
OpenAI protocol (tests/openai_stub.py) in its own process, with fault injection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Each test gets its own cache, no config file and no .env from the developer's
    machine, and no real API keys."""
    monkeypatch.setenv("FORGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FORGEKIT_DOTENV", str(tmp_path / "no.env"))
    monkeypatch.delenv("FORGEKIT_CONFIG", raising=False)
    monkeypatch.delenv("FORGEKIT_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setattr("forgekit.config._dotenv_loaded", False)
    yield


class StubServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "openai_stub.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"stub server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _call(self, path: str, data: dict | None = None) -> dict:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method="POST" if body else "GET"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def configure(self, **config) -> None:
        self._call("/_config", config)

    def stats(self) -> dict:
        return self._call("/_stats")["stats"]

    def log(self) -> list[dict]:
        return self._call("/_stats")["log"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def stub_server():
    server = StubServer()
    yield server
    server.close()


@pytest.fixture
def stub(stub_server):
    stub_server.configure()  # defaults: no latency, no faults
    return stub_server


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster for the whole test session (2 CPUs, loopback, no dashboard),
    started on first use and shut down at the end. Ray start-up on a loaded machine takes
    seconds, so tests share it instead of starting their own."""
    pytest.importorskip("ray")
    from forgekit.distributed import connect, shutdown

    # Workers must import this checkout's forgekit, like the driver does.
    root = str(HERE.parent)
    path = os.environ.get("PYTHONPATH", "")
    if root not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, path) if p)
    info = connect(num_cpus=2, object_store_memory=200 * 1024 * 1024)
    yield info
    shutdown()


def write_profile(tmp_path: Path, monkeypatch, url: str, name: str = "stub", **extra) -> Path:
    """A config file with one OpenAI-compatible profile pointing at `url`."""
    import yaml

    entry = {
        "provider": "openai",
        "base_url": url,
        "model": "stub-model",
        "template": "chatml",
        **extra,
    }
    path = tmp_path / "forgekit.yaml"
    models = {}
    if path.exists():
        models = yaml.safe_load(path.read_text())["models"]
    models[name] = entry
    path.write_text(yaml.safe_dump({"models": models}))
    monkeypatch.setenv("FORGEKIT_CONFIG", str(path))
    return path


@pytest.fixture
def stub_model(stub, tmp_path, monkeypatch):
    """The profile name 'stub', pointing at the stub server (timeout 2 s)."""
    write_profile(tmp_path, monkeypatch, stub.url, timeout=2.0)
    return "stub"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def pytest_collection_modifyitems(config, items):
    # Keep slow tests last so failures in fast ones show first.
    items.sort(key=lambda item: 1 if item.get_closest_marker("slow") else 0)


# --- the embedded model's worker processes (forgekit/models/worker_pool.py) ---------------
@pytest.fixture(scope="session", autouse=True)
def model_workers(tmp_path_factory):
    """One worker dir for the session (so model tests share one loaded model), a short idle
    timeout as a backstop, and every worker stopped at the end: nothing is left running."""
    import os

    from forgekit.models.worker_pool import stop_workers

    folder = tmp_path_factory.mktemp("workers")
    saved = {k: os.environ.get(k) for k in ("FORGEKIT_WORKER_DIR", "FORGEKIT_WORKER_IDLE")}
    os.environ["FORGEKIT_WORKER_DIR"] = str(folder)
    os.environ["FORGEKIT_WORKER_IDLE"] = "120"
    yield folder
    stop_workers()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def own_workers(tmp_path, monkeypatch):
    """A worker dir of this test's own (no worker running yet), stopped afterwards."""
    from forgekit.models.worker_pool import stop_workers

    folder = tmp_path / "workers"
    monkeypatch.setenv("FORGEKIT_WORKER_DIR", str(folder))
    yield folder
    stop_workers()
