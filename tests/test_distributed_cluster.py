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


def test_settings_travel_in_the_runtime_env_and_keys_by_reference(ray_cluster, monkeypatch):
    import ray

    from forgekit.distributed import secret_env, worker_env, worker_secrets

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-worker-secret")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    env, secrets = worker_env(), worker_secrets()
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:1/v1"
    assert "OPENAI_API_KEY" not in env and "UNRELATED_SETTING" not in env
    assert secrets == {"OPENAI_API_KEY": "sk-test-worker-secret"}

    @ray.remote
    def read_env(secrets: dict) -> tuple:
        import os

        with secret_env(secrets):
            inside = os.environ.get("OPENAI_API_KEY"), os.environ.get("OPENAI_BASE_URL")
        return inside, os.environ.get("OPENAI_API_KEY")

    ref = read_env.options(runtime_env={"env_vars": env}).remote(ray.put(secrets))
    inside, after = ray.get(ref, timeout=120)
    assert inside == ("sk-test-worker-secret", "http://127.0.0.1:1/v1")
    assert after is None  # the worker process does not keep the key for later tasks
