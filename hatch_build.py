"""Build hook: compile forgekit's C MinHash kernels (forgekit/evaluate/minhash/_kernels.c)
with the machine's C compiler while the wheel is built.

The library is a plain shared object loaded with ctypes, so it does not depend on the Python
version. Without a compiler the wheel is still built, pure Python: MinHash then runs its numpy
code (the same results, slower) and `forgekit.evaluate.minhash.native.status()` says why.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from subprocess import CalledProcessError

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = ROOT / "forgekit" / "evaluate" / "minhash"


def _native_module():
    """forgekit/evaluate/minhash/native.py, loaded by path (forgekit is not installed yet)."""
    spec = importlib.util.spec_from_file_location("_forgekit_native", PACKAGE_DIR / "native.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class KernelsBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        native = _native_module()
        if version == "editable":
            # an editable install imports the source tree: the library goes next to its source
            # (older builds of other source are removed; their names no longer match)
            out_dir = PACKAGE_DIR
            for old in PACKAGE_DIR.glob("_kernels-*.so"):
                if old.name != native.library_name():
                    old.unlink()
        else:
            out_dir = Path(tempfile.mkdtemp(prefix="forgekit-kernels-"))
        try:
            built = native.compile_library(out_dir)
        except (OSError, CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            print(
                f"forgekit: C MinHash kernels not built ({detail.strip()[:500]}); "
                "MinHash will use its numpy code",
                file=sys.stderr,
            )
            return
        if version != "editable":
            rel = built.relative_to(out_dir)
            build_data["force_include"][str(built)] = f"forgekit/evaluate/minhash/{rel}"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
