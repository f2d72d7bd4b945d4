"""Keys live in the environment or .env only, and nothing forgekit writes contains them.
Profiles: config file, built-ins, errors that list what is configured."""

import json
import subprocess
import sys

import pytest

from forgekit.config import get_profile, list_profiles
from forgekit.engine import RunConfig, Task, run
from forgekit.errors import ClientRequestError, ConfigError, ModelNotFoundError
from tests.conftest import write_profile

KEY = "sk-test-0123456789abcdefSECRET"
DOTENV_KEY = "sk-dotenv-9876543210zyxwvuSECRET"


def tasks(n):
    async def make(ctx, i):
        c = await ctx.chat([{"role": "user", "content": f"q{i}"}], max_tokens=8)
        return {"id": ctx.task.id, "input": f"q{i}", "output": c.text}

    return [Task(id=f"t{i}", fn=lambda ctx, i=i: make(ctx, i)) for i in range(n)]


def all_written_bytes(root):
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_no_file_written_contains_the_key(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_ENDPOINT_KEY", KEY)
    (tmp_path / ".env").write_text(f"OTHER_API_KEY={DOTENV_KEY}\n")
    monkeypatch.setenv("FORGEKIT_DOTENV", str(tmp_path / ".env"))
    monkeypatch.delenv("OTHER_API_KEY", raising=False)
    write_profile(tmp_path, monkeypatch, stub.url, name="keyed", api_key_env="MY_ENDPOINT_KEY")
    out_dir = tmp_path / "out"
    # A 400 whose body echoes the Authorization header: the error log must be scrubbed.
    stub.configure(status=400)
    failed = run(
        tasks(3),
        model="keyed",
        out=out_dir / "a.jsonl",
        job={"m": 1},
        config=RunConfig(progress=False),
    )
    assert failed.stats.failed == 3
    assert "Bearer ***" in failed.errors[0]["message"]  # the server did echo it
    # A 401 stops the run; the manifest's stop reason carries the message, scrubbed.
    stub.configure(status=401)
    with pytest.raises(ClientRequestError):
        run(
            tasks(3),
            model="keyed",
            out=out_dir / "b.jsonl",
            job={"m": 1},
            config=RunConfig(progress=False),
        )
    stub.configure()
    ok = run(
        tasks(3),
        model="keyed",
        out=out_dir / "c.jsonl",
        job={"m": 1},
        config=RunConfig(progress=False),
    )
    assert ok.stats.ok == 3
    written = all_written_bytes(tmp_path / "out") + all_written_bytes(tmp_path / "cache")
    assert len(written) > 500
    assert KEY.encode() not in written
    assert DOTENV_KEY.encode() not in written
    manifest = json.loads((out_dir / "b.manifest.json").read_text())
    assert "HTTP 401" in manifest["stop_reason"] and "***" in manifest["stop_reason"]


def test_config_file_with_a_key_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "forgekit.yaml"
    path.write_text("models:\n  leaky:\n    base_url: http://x/v1\n    api_key: sk-abc\n")
    monkeypatch.setenv("FORGEKIT_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"models.leaky.api_key: API keys must not be stored"):
        list_profiles()


def test_unknown_model_lists_configured_names(stub, tmp_path, monkeypatch):
    write_profile(tmp_path, monkeypatch, stub.url, name="my-vllm")
    with pytest.raises(ModelNotFoundError) as info:
        get_profile("gpt-5-turbo")
    message = str(info.value)
    assert "unknown model 'gpt-5-turbo'" in message
    assert "local" in message and "my-vllm" in message and "openai:<model>" in message


def test_bad_profile_field_names_the_key(tmp_path, monkeypatch):
    path = tmp_path / "forgekit.yaml"
    path.write_text("models:\n  x:\n    provider: openai\n    timeout: soon\n")
    monkeypatch.setenv("FORGEKIT_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"forgekit.yaml: models.x.timeout"):
        list_profiles()


def test_openai_prefix_profiles_and_dotenv(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={KEY}\n")
    monkeypatch.setenv("FORGEKIT_DOTENV", str(tmp_path / ".env"))
    profile = get_profile("openai:gpt-4o-mini")
    assert profile.model == "gpt-4o-mini" and profile.completions is False
    assert profile.api_key() == KEY
    assert profile.unit_prices() == pytest.approx((0.15e-6, 0.60e-6))
    public = json.dumps(profile.public())
    assert KEY not in public and '"api_key_set": true' in public


def test_cli_config_and_models_never_print_keys(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_ENDPOINT_KEY", KEY)
    write_profile(tmp_path, monkeypatch, stub.url, name="keyed", api_key_env="MY_ENDPOINT_KEY")
    for argv in (["config", "--model", "keyed"], ["models", "--check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "forgekit.cli", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert KEY not in proc.stdout + proc.stderr
    assert (
        '"api_key_set": true'
        in subprocess.run(
            [sys.executable, "-m", "forgekit.cli", "config", "--model", "keyed"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    models = subprocess.run(
        [sys.executable, "-m", "forgekit.cli", "models", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "keyed" in models and "yes" in models and "local" in models


def test_cli_errors_are_one_line(tmp_path):
    cases = [
        (["magpie", "--model", "nope"], "unknown model 'nope'"),
        (["magpie", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ]
    for argv, expected in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "forgekit.cli", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0
        assert expected in proc.stderr
        assert "Traceback" not in proc.stderr
