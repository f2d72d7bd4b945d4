"""Is this llama.cpp build right for this CPU? Build flags, and a self-test run out of process.

A default source build of llama-cpp-python compiles for the build machine (GGML_NATIVE) and,
on Xeons with AMX, compiles llama.cpp's AMX kernels, whose first decode segfaults
(ggml-org/llama.cpp #20824). A native crash takes the whole process down — a Jupyter kernel
with every variable in it — so before the embedded model serves a run, a child process loads
it and generates a few tokens. A crash there becomes one clear error with the fix.

This file is also a script that needs nothing but the standard library, so the Makefile,
.ci/run and binder/ can ask it for the build flags before forgekit is installed:

    python forgekit/models/llama_build.py cmake-args    # CMAKE_ARGS for this CPU
    python forgekit/models/llama_build.py cmake-args --portable   # for any x86-64-v3 CPU
    python forgekit/models/llama_build.py key           # version + flags digest (cache key)
    python -m forgekit.models.llama_build check         # run the self-test, print the verdict
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

# The llama-cpp-python release the project builds and tests (the Makefile reads it from here).
LLAMA_CPP_VERSION = "0.3.36"

# Never built, on any CPU: the AMX kernels segfault on first decode (see the module docstring).
_AMX_OFF = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
# AVX-512 sub-features llama.cpp can use, by /proc/cpuinfo flag.
_AVX512_EXTRAS = {
    "GGML_AVX512_VBMI": "avx512vbmi",
    "GGML_AVX512_VNNI": "avx512_vnni",
    "GGML_AVX512_BF16": "avx512_bf16",
}
_PROBE_TIMEOUT_S = 600.0  # a hung build, not a slow machine: loading + 4 tokens takes ~1 s


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags on x86-64 (Linux /proc/cpuinfo, macOS sysctl); None elsewhere,
    where llama.cpp's native build is the right one."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {flag.lower().replace(".", "_") for flag in out.split()}
    except (OSError, subprocess.CalledProcessError):
        return set()  # x86-64 of unknown features: the most portable build


def cmake_options(flags: set[str] | None) -> dict[str, str]:
    """The llama.cpp CMake options for a CPU with these flags (None: not x86-64 -> the
    native build). Measured on a 2-core Xeon with AVX-512 (DESIGN.md §7): the
    AVX-512 build without AMX is the fastest build that runs correctly."""
    # forgekit never loads llava/mtmd (multimodal; llama-cpp-python imports it lazily), and
    # skipping it shortens the first build.
    options = {"LLAVA_BUILD": "OFF"}
    if flags is None:
        return options
    has = flags.__contains__
    options["GGML_NATIVE"] = "OFF"
    avx2 = has("avx2") and has("fma") and has("f16c")
    options["GGML_AVX"] = "ON" if has("avx") else "OFF"
    options["GGML_AVX2"] = "ON" if avx2 else "OFF"
    options["GGML_FMA"] = "ON" if avx2 else "OFF"
    options["GGML_F16C"] = "ON" if has("f16c") else "OFF"
    options["GGML_BMI2"] = "ON" if has("bmi2") else "OFF"
    avx512 = avx2 and all(has(f) for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq"))
    options["GGML_AVX512"] = "ON" if avx512 else "OFF"
    for option, flag in _AVX512_EXTRAS.items():
        options[option] = "ON" if avx512 and has(flag) else "OFF"
    for option in _AMX_OFF:
        options[option] = "OFF"
    return options


# x86-64-v3 (AVX2, FMA, F16C, BMI2): for images built on one machine and run on others
# (Binder), where the build machine's AVX-512 may be missing on the machine that runs it.
PORTABLE_FLAGS = frozenset({"avx", "avx2", "fma", "f16c", "bmi2"})


def cmake_args(flags: set[str] | None = None, *, portable: bool = False) -> str:
    """CMAKE_ARGS for building llama-cpp-python on this CPU (or on one with `flags`);
    `portable`: for x86-64-v3 machines in general, when the build runs elsewhere."""
    if portable and flags is None:
        flags = None if cpu_flags() is None else set(PORTABLE_FLAGS)
    options = cmake_options(cpu_flags() if flags is None else flags)
    return " ".join(f"-D{name}={value}" for name, value in options.items())


def build_key(version: str = LLAMA_CPP_VERSION, args: str | None = None) -> str:
    """Names a built wheel by everything that decides its code: a wheel is reused only for
    the same version, flags and Python, never picked up silently for other flags."""
    args = cmake_args() if args is None else args
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(f"{version}|{args}|{tag}".encode()).hexdigest()[:12]
    return f"{version}-{tag}-{digest}"


def reinstall_command(args: str | None = None) -> str:
    """The command that rebuilds llama-cpp-python for this CPU without any cached wheel."""
    args = cmake_args() if args is None else args
    env = f'CMAKE_ARGS="{args}" ' if args else ""
    return (
        f"{env}pip install --force-reinstall --no-cache-dir --no-deps "
        f"llama-cpp-python=={LLAMA_CPP_VERSION}"
    )


# -- the self-test ------------------------------------------------------------------------
class BuildCheckFailed(Exception):
    """The build cannot generate here; the message names the cause and the fix."""


_PROBE = r"""
import json, sys
try:
    import llama_cpp
except Exception as exc:
    print(json.dumps({"import_error": f"{type(exc).__name__}: {exc}"}), flush=True)
    sys.exit(3)
info = llama_cpp.llama_print_system_info()
info = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
print(json.dumps({"system_info": info}), flush=True)  # before generating: survives a crash
llama = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=int(sys.argv[2]),
                        verbose=False)
out = llama.create_completion("<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n",
                              max_tokens=4, temperature=0.0)
print(json.dumps({"tokens": out["usage"]["completion_tokens"],
                  "text": out["choices"][0]["text"]}), flush=True)
llama.close()
"""

# Verdicts found in this process: a failed build fails every later call at once, and a good
# one is not probed again (the verdict file also remembers good builds across processes).
_VERDICTS: dict[str, BaseException | None] = {}


def _build_identity(model_path: str) -> dict[str, Any] | None:
    """What the verdict depends on: the installed llama.cpp library and the model file."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = []
    for folder in spec.submodule_search_locations:
        for lib in sorted(Path(folder).rglob("*.so*")) + sorted(Path(folder).rglob("*.dylib")):
            stat = lib.stat()
            libs.append([str(lib), stat.st_size, stat.st_mtime_ns])
    model = Path(model_path).stat()
    return {
        "python": sys.executable,
        "libs": libs,
        "model": [model_path, model.st_size, model.st_mtime_ns],
    }


def _verdict_file() -> Path:
    """Where good builds are remembered. A fact about this machine's installed library, not
    about a run: it lives beside, not inside, a run's FORGEKIT_CACHE_DIR (tests give each
    test its own cache, and every notebook test would probe again)."""
    explicit = os.environ.get("FORGEKIT_BUILD_CHECK_FILE")
    if explicit:
        return Path(explicit)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "forgekit" / "llama-build-ok.json"


def _known_good() -> set[str]:
    try:
        return set(json.loads(_verdict_file().read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return set()


def _remember_good(key: str) -> None:
    path = _verdict_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted(_known_good() | {key})), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a probe next time


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _parse_probe(stdout: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in stdout.splitlines():
        try:
            found.update(json.loads(line))
        except ValueError:
            continue
    return found


def check_build(model_path: str, n_threads: int = 1) -> None:
    """Prove, in a child process, that this llama.cpp build can load `model_path` and generate.
    Raises BuildCheckFailed naming the cause and the fix; returns quietly when it works."""
    identity = _build_identity(model_path)
    if identity is None:
        raise BuildCheckFailed(
            "the embedded model needs llama-cpp-python, which is not installed; install it "
            f"built for this CPU with: {reinstall_command()}"
        )
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
    if key in _VERDICTS:
        if _VERDICTS[key] is not None:
            raise _VERDICTS[key]
        return
    if key in _known_good():
        _VERDICTS[key] = None
        return
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, model_path, str(max(1, n_threads))],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        failure = BuildCheckFailed(
            f"the llama.cpp self-test did not finish in {_PROBE_TIMEOUT_S:.0f} s (loading "
            f"{Path(model_path).name} and generating 4 tokens); the build may hang on this CPU. "
            f"Rebuild it with: {reinstall_command()}"
        )
    else:
        failure = _judge(proc, model_path)
    _VERDICTS[key] = failure
    if failure is not None:
        raise failure
    _remember_good(key)


def _judge(proc: subprocess.CompletedProcess, model_path: str) -> BuildCheckFailed | None:
    found = _parse_probe(proc.stdout)
    if proc.returncode == 0 and found.get("tokens", 0) >= 1:
        return None
    missing = re.search(r"No module named '([\w.]+)'", found.get("import_error", ""))
    if missing and missing.group(1).split(".")[0] != "llama_cpp":
        return BuildCheckFailed(
            f"llama-cpp-python is installed but its dependency {missing.group(1)!r} is not; "
            f"install it with: pip install {missing.group(1).split('.')[0]}"
        )
    if "import_error" in found:
        return BuildCheckFailed(
            f"llama-cpp-python is installed but cannot be imported ({found['import_error']}). "
            f"Rebuild it for this CPU with: {reinstall_command()}"
        )
    info = found.get("system_info", "")
    amx = "AMX_INT8 = 1" in info
    if proc.returncode < 0:
        cause = f"crashed with {_signal_name(proc.returncode)}"
    elif proc.returncode == 0:
        cause = "generated no tokens"
    else:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        cause = f"failed (exit status {proc.returncode}: {last[:300]})"
    hint = (
        " The build has llama.cpp's AMX kernels, whose first decode crashes on these CPUs "
        "(llama.cpp #20824)."
        if amx
        else ""
    )
    built = f" Its build reports: {info.strip()[:200]}." if info else ""
    return BuildCheckFailed(
        f"the embedded model's llama.cpp build {cause} in a self-test (a child process loading "
        f"{Path(model_path).name} and generating 4 tokens); your process is unharmed.{hint}"
        f"{built} Rebuild llama-cpp-python for this CPU, bypassing pip's wheel cache: "
        f"{reinstall_command()}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "cmake-args"
    if command == "cmake-args":
        print(cmake_args(portable="--portable" in argv))
    elif command == "key":
        print(build_key())
    elif command == "version":
        print(LLAMA_CPP_VERSION)
    elif command == "reinstall":
        print(reinstall_command())
    elif command == "check":
        from forgekit.models.local import find_smollm2_gguf

        try:
            check_build(str(argv[1] if len(argv) > 1 else find_smollm2_gguf()))
        except BuildCheckFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("llama.cpp build OK: loads the model and generates")
    else:
        print(f"unknown command {command!r}: cmake-args, key, version, reinstall, check")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
