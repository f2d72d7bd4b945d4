"""The embedded model's llama.cpp build: flags per CPU, and the out-of-process self-test that
turns a crashing or missing build into one clear error while the caller (a script, a Jupyter
kernel) stays alive. Crashing builds are injected as a stand-in `llama_cpp` package that
segfaults the way an AMX build does on first decode; the good path uses the real build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from forgekit.models import llama_build
from forgekit.models.llama_build import (
    BuildCheckFailed,
    build_key,
    check_build,
    cmake_options,
    reinstall_command,
)

ROOT = Path(__file__).resolve().parent.parent

SAPPHIRE_RAPIDS = {
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512vbmi",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
}
HASWELL = {"avx", "avx2", "fma", "f16c", "bmi2"}
SANDY_BRIDGE = {"avx"}


def test_amx_is_never_built_and_avx512_only_where_the_cpu_has_it():
    xeon = cmake_options(SAPPHIRE_RAPIDS)
    assert xeon["GGML_NATIVE"] == "OFF"
    assert {xeon[k] for k in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")} == {"OFF"}
    assert xeon["GGML_AVX512"] == xeon["GGML_AVX512_VNNI"] == xeon["GGML_AVX512_BF16"] == "ON"

    haswell = cmake_options(HASWELL)
    assert haswell["GGML_AVX2"] == haswell["GGML_FMA"] == "ON"
    assert haswell["GGML_AVX512"] == haswell["GGML_AVX512_VNNI"] == "OFF"

    old = cmake_options(SANDY_BRIDGE)  # no AVX2: an AVX2 build would die of SIGILL there
    assert old["GGML_AVX"] == "ON"
    assert old["GGML_AVX2"] == old["GGML_FMA"] == old["GGML_F16C"] == "OFF"
    assert cmake_options(set())["GGML_AVX"] == "OFF"
    assert cmake_options(None) == {"LLAVA_BUILD": "OFF"}  # not x86-64: the native build


def test_portable_flags_are_x86_64_v3_whatever_builds_them(monkeypatch):
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: set(SAPPHIRE_RAPIDS))
    portable = llama_build.cmake_args(portable=True)
    assert "-DGGML_AVX2=ON" in portable and "-DGGML_AVX512=OFF" in portable
    assert "-DGGML_AVX512=ON" in llama_build.cmake_args()


def test_a_wheel_is_named_by_its_flags():
    a = build_key("0.3.36", "-DGGML_AVX512=ON -DGGML_AMX_INT8=OFF")
    b = build_key("0.3.36", "-DGGML_AVX512=ON -DGGML_AMX_INT8=ON")
    assert a != b and a == build_key("0.3.36", "-DGGML_AVX512=ON -DGGML_AMX_INT8=OFF")
    assert a.startswith("0.3.36-cp3")
    command = reinstall_command("-DGGML_NATIVE=OFF")
    assert "--no-cache-dir" in command and "--force-reinstall" in command
    assert command.startswith('CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install')


def test_the_script_runs_without_forgekit_installed(tmp_path):
    """The Makefile asks it for flags before anything is installed: standard library only."""
    script = ROOT / "forgekit" / "models" / "llama_build.py"
    out = subprocess.run(
        [sys.executable, "-S", "-I", str(script), "cmake-args"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert "-DGGML_NATIVE=OFF" in out or not out.strip()  # empty only on non-x86 machines
    assert "AMX_INT8=ON" not in out


# -- fault injection: stand-in llama_cpp packages -------------------------------------------
CRASHING = """
import os, signal
def llama_print_system_info():
    return b"CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
class Llama:
    def __init__(self, **kwargs):
        pass
    def create_completion(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGSEGV)  # what an AMX build does on its first decode
    create_chat_completion = create_completion
"""
UNLOADABLE = """
raise OSError("libllama.so: cannot open shared object file: No such file or directory")
"""


def stand_in(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "stand-in"
    (folder / "llama_cpp" / "lib").mkdir(parents=True)
    (folder / "llama_cpp" / "__init__.py").write_text(textwrap.dedent(source))
    (folder / "llama_cpp" / "lib" / "libllama.so").write_bytes(b"\0" * 64)
    return folder


def run_script(code: str, folder: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
        "FORGEKIT_CACHE_DIR": str(tmp_path / "cache"),
        "FORGEKIT_NO_WIDGETS": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


USER_SCRIPT = """
from forgekit.errors import ForgeError
from forgekit.methods import magpie
try:
    magpie(3, model="local", out="magpie.jsonl", progress=False)
except ForgeError as exc:
    print("ERROR", type(exc).__name__, exc)
print("STILL ALIVE")
"""


def test_a_crashing_build_is_a_clear_error_and_the_caller_lives(tmp_path):
    proc = run_script(USER_SCRIPT, stand_in(tmp_path, CRASHING), tmp_path)
    assert proc.returncode == 0, proc.stderr
    error = next(line for line in proc.stdout.splitlines() if line.startswith("ERROR"))
    assert "ModelUnavailableError" in error
    assert "crashed with SIGSEGV" in error and "self-test" in error
    assert "AMX" in error and "#20824" in error  # the cause, from the build's own report
    assert "CMAKE_ARGS=" in error and "--no-cache-dir" in error and "AMX_INT8=OFF" in error
    assert proc.stdout.rstrip().endswith("STILL ALIVE")
    # The run stopped at once (one failure, not one per record), and left no torn data.
    out = tmp_path / "magpie.jsonl"
    assert not out.exists() or out.read_text() == ""


def test_an_unloadable_build_is_a_clear_error(tmp_path):
    proc = run_script(USER_SCRIPT, stand_in(tmp_path, UNLOADABLE), tmp_path)
    assert proc.returncode == 0, proc.stderr
    error = next(line for line in proc.stdout.splitlines() if line.startswith("ERROR"))
    assert "cannot be imported" in error and "libllama.so" in error
    assert "pip install --force-reinstall --no-cache-dir" in error
    assert "STILL ALIVE" in proc.stdout


@pytest.mark.slow
def test_a_crashing_build_leaves_the_jupyter_kernel_alive(tmp_path, monkeypatch):
    from jupyter_client.manager import start_new_kernel

    folder = stand_in(tmp_path, CRASHING)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), str(ROOT)]))
    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120, cwd=str(tmp_path))
    try:
        assert (
            kc.execute_interactive("%load_ext forgekit", timeout=120)["content"]["status"] == "ok"
        )
        kc.execute_interactive("kept = 41", timeout=60)
        outputs: list[dict] = []
        reply = kc.execute_interactive(
            "%forge magpie -n 2 --model local --out m.jsonl",
            timeout=300,
            output_hook=lambda msg: outputs.append(msg),
        )
        text = json.dumps([m["content"] for m in outputs])
        assert reply["content"]["status"] == "error"
        assert "crashed with SIGSEGV" in text and "CMAKE_ARGS" in text
        assert km.is_alive()
        reply = kc.execute_interactive(
            "kept + 1", timeout=60, output_hook=lambda msg: outputs.append(msg)
        )
        assert reply["content"]["status"] == "ok"
        results = [
            m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"
        ]
        assert results == ["42"]  # the kernel's variables survived
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# -- the real build ----------------------------------------------------------------------------
@pytest.mark.model
def test_the_installed_build_passes_and_the_verdict_is_remembered(tmp_path, monkeypatch):
    from forgekit.models.local import find_smollm2_gguf

    model = str(find_smollm2_gguf())
    verdicts = tmp_path / "verdicts.json"
    monkeypatch.setenv("FORGEKIT_BUILD_CHECK_FILE", str(verdicts))
    monkeypatch.setattr(llama_build, "_VERDICTS", {})
    check_build(model, 2)
    remembered = json.loads(verdicts.read_text())
    assert len(remembered) == 1
    # A new process (no in-memory verdict) trusts the file: no second child process.
    monkeypatch.setattr(llama_build, "_VERDICTS", {})

    def no_probe(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(llama_build.subprocess, "run", no_probe)
    check_build(model, 2)


@pytest.mark.model
def test_check_command_reports_a_working_build():
    proc = subprocess.run(
        [sys.executable, "-m", "forgekit.models.llama_build", "check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "build OK" in proc.stdout


def test_a_failed_verdict_is_not_remembered_and_fails_fast(tmp_path, monkeypatch):
    verdicts = tmp_path / "verdicts.json"
    monkeypatch.setenv("FORGEKIT_BUILD_CHECK_FILE", str(verdicts))
    folder = stand_in(tmp_path, CRASHING)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.setattr(llama_build, "_VERDICTS", {})
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    with pytest.raises(BuildCheckFailed, match="SIGSEGV"):
        check_build(str(model))
    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(
        llama_build.subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k)
    )
    with pytest.raises(BuildCheckFailed, match="SIGSEGV"):
        check_build(str(model))  # same process: the verdict stands, no second probe
    assert calls == []
    assert not verdicts.exists()
