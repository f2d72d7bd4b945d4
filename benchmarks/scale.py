"""Scaling beyond one process: one command for every scaling measurement, one JSON file.

    .venv/bin/python benchmarks/scale.py [--quick] [--only generate|minhash]

Runs, when their module is present:
- benchmarks/scale_minhash.py `minhash_scaling(quick=...)`: MinHash docs/s local vs Ray and
  per core vs rensa and datasketch;
- benchmarks/scale_generate.py `generate_scaling(quick=...)`: sharded `generate` on Ray vs a
  local run at the same total concurrency.
Writes benchmarks/results/scale.json (each part under its own key, with the machine).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# part name -> (module in benchmarks/, function taking quick=)
PARTS = {
    "minhash": ("scale_minhash", "minhash_scaling"),
    "generate": ("scale_generate", "generate_scaling"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--only", choices=sorted(PARTS), default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/scale.json"))
    args = parser.parse_args()
    results: dict = {
        "benchmark": "scale",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "quick": args.quick,
    }
    out = Path(args.out)
    if out.exists() and args.only:  # keep the other part's last figures
        results = {**json.loads(out.read_text()), **results}
    for name, (module_name, function) in PARTS.items():
        if args.only and name != args.only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            print(f"{name}: benchmarks/{module_name}.py is not here; skipped", flush=True)
            continue
        results[name] = getattr(module, function)(quick=args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
