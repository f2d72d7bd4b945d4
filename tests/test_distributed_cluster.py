"""The cluster helper: a real local Ray cluster, attached once, reused, with secrets carried
by the workers' environment."""

from __future__ import annotations

import pytest

from forgekit.errors import ConfigError


def test_connect_is_idempotent_and_local(ray_cluster):
    from forgekit.distributed import connect, is_connected

    again = connect()
    assert again == ray_cluster
    assert ray_cluster.local and is_connected()
    assert ray_cluster.num_cpus == 2


def test_attaching_elsewhere_while_connected_is_refused(ray_cluster):
    from forgekit.distributed import connect

    with pytest.raises(ConfigError, match="already connected"):
        connect("ray://10.0.0.1:10001")


def test_workers_get_the_key_from_their_environment(ray_cluster, monkeypatch):
    import ray

    from forgekit.distributed import worker_env

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-worker-secret")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    env = worker_env()
    assert env["OPENAI_API_KEY"] == "sk-test-worker-secret"
    assert "UNRELATED_SETTING" not in env

    @ray.remote
    def read_key() -> str | None:
        import os

        return os.environ.get("OPENAI_API_KEY")

    ref = read_key.options(runtime_env={"env_vars": env}).remote()
    assert ray.get(ref, timeout=120) == "sk-test-worker-secret"
