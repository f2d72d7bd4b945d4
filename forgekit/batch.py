"""Batch runs: one parameterized notebook, many parameter combinations, run by papermill.

    forge batch templates/magpie.ipynb --grid grid.yaml --jobs 2 --out runs/

A grid file is YAML:

    product:            # every combination of these lists
      n: [5, 10]
      temperature: [0.7, 1.0]
    cases:              # and/or explicit combinations
      - {n: 3, system: "Math only."}
    fixed:              # added to every combination
      model: local

Each combination runs in its own folder `OUT/runs/<name>/` (the notebook's working
directory; a template writes its data there), and its executed notebook goes to
`OUT/notebooks/<name>.ipynb`. Input files (input_path, docs_dir, seed_tasks: parameters
whose default is empty) may be given relative to the folder you run the batch from.
`OUT/index.jsonl` and `OUT/index.csv` list every combination with its parameters, status,
duration, record count, output paths and error summary. Re-running skips combinations
already finished; a failed one is recorded with its error cell and does not stop the
others, but `forge batch` then exits with status 1 and lists each failed combination (its
executed notebook, error cell and error). Before anything is written, output notebooks and
index files are scanned for the API key values in the environment: a match is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forgekit.batch_grid import absolute_inputs, check_parameters, combination_name, load_grid
from forgekit.batch_report import failure_report, plain_text  # noqa: F401 - re-exported
from forgekit.data.records import fingerprint
from forgekit.errors import ConfigError, ForgeError
from forgekit.secrets import find_secrets, scrub, secret_values


class SecretLeakError(ForgeError):
    """An output about to be written contains an API key value."""


class BatchFailedError(ForgeError):
    """Some combinations of a batch failed. `result` is the batch's index table: the CLI and
    the magic show it before the error, so the combinations that did run are not hidden."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class Combination:
    params: dict[str, Any]
    name: str
    key: str
    status: str = "pending"  # ok | failed | skipped
    duration_s: float | None = None
    records: int | None = None
    notebook: str | None = None
    workdir: str | None = None
    data_files: list[str] = field(default_factory=list)
    error: str | None = None
    error_cell: int | None = None
    traceback: str | None = None  # the error cell's traceback (plain text, keys scrubbed)


def _scan(text: str, what: str, secrets: list[str]) -> None:
    leaks = find_secrets(text, secrets)
    if leaks:
        raise SecretLeakError(f"{what} contains an API key value ({', '.join(leaks)}); not written")


# -- running ------------------------------------------------------------------------------
def _count_records(folder: Path) -> tuple[int, list[str]]:
    total, files = 0, []
    for path in sorted(folder.rglob("*.jsonl")):
        if path.name.endswith((".errors.jsonl",)):
            continue
        with open(path, "rb") as handle:
            total += sum(1 for line in handle if line.strip())
        files.append(str(path))
    return total, files


def _error_summary(exc: BaseException, secrets: list[str]) -> tuple[str, int | None, str]:
    """`ename: evalue`, the cell's execution count and its traceback (plain, scrubbed)."""
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    cell = getattr(exc, "exec_count", None) or getattr(exc, "cell_index", None)
    lines = getattr(exc, "traceback", None)
    trace = "\n".join(lines) if isinstance(lines, list) else f"{ename}: {evalue}"
    summary = scrub(f"{ename}: {evalue}".strip()[:500], secrets)
    return summary, cell, scrub(plain_text(trace)[-8000:], secrets)


# A kernel that never started is not the notebook's failure: parallel jobs pick their kernels
# ports at the same moment and one can lose a port to another (seen in CI as "ZMQError:
# Address already in use", then "Kernel died before replying to kernel_info"). Such a
# combination is started again with fresh ports, at most this many times in all.
KERNEL_START_ATTEMPTS = 3
_KERNEL_NOT_STARTED = ("Kernel died before replying to kernel_info", "Kernel didn't respond")


def _kernel_did_not_start(exc: BaseException) -> bool:
    return not hasattr(exc, "exec_count") and any(m in str(exc) for m in _KERNEL_NOT_STARTED)


def _run_one(
    template: Path,
    combo: Combination,
    parameters: dict[str, Any],
    out: Path,
    kernel: str | None,
    timeout: float | None,
) -> Combination:
    import papermill

    # Read here, where the notebook runs (a child process, a Ray worker): key values never
    # travel as arguments, which Ray would store and log.
    secrets = secret_values()
    # Kernels started here have no front end: text progress, not widgets (this runs in a
    # worker process of its own, so the setting stays here).
    os.environ.setdefault("FORGEKIT_NO_WIDGETS", "1")
    workdir = out / "runs" / combo.name
    workdir.mkdir(parents=True, exist_ok=True)
    final = out / "notebooks" / f"{combo.name}.ipynb"
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = out / ".scratch" / f"{combo.name}.ipynb"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            papermill.execute_notebook(
                str(template),
                str(scratch),
                parameters=parameters,
                cwd=str(workdir),
                kernel_name=kernel,
                progress_bar=False,
                log_output=False,
                execution_timeout=timeout,
                report_mode=False,
            )
            combo.status, combo.error = "ok", None
        except Exception as exc:  # the notebook's own failure: recorded, never fatal
            if attempt < KERNEL_START_ATTEMPTS and _kernel_did_not_start(exc):
                continue
            combo.status = "failed"
            combo.error, combo.error_cell, combo.traceback = _error_summary(exc, secrets)
        break
    combo.duration_s = round(time.monotonic() - started, 2)
    if scratch.exists():
        try:
            _scan(scratch.read_text(encoding="utf-8"), f"output notebook {final.name}", secrets)
            shutil.move(str(scratch), final)
            combo.notebook = str(final)
        except SecretLeakError as exc:
            scratch.unlink()
            combo.status, combo.error = "failed", str(exc)
    combo.records, combo.data_files = _count_records(workdir)
    combo.workdir = str(workdir)
    return combo


def _read_index(out: Path) -> dict[str, dict[str, Any]]:
    path = out / "index.jsonl"
    if not path.exists():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["key"]] = row
    return rows


def _write_index(out: Path, combos: list[Combination], secrets: list[str]) -> None:
    import pandas as pd

    # A skipped combination is still a finished one: the index says "ok".
    rows = [{**asdict(c), "status": "ok" if c.status == "skipped" else c.status} for c in combos]
    lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    flat = pd.DataFrame(
        [
            {
                **{f"param.{k}": v for k, v in r["params"].items()},
                **{k: v for k, v in r.items() if k != "params"},
            }
            for r in rows
        ]
    )
    csv_text = flat.to_csv(index=False)
    _scan(lines, "index.jsonl", secrets)
    _scan(csv_text, "index.csv", secrets)
    for name, text in (("index.jsonl", lines), ("index.csv", csv_text)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)


def _run_in_processes(calls: list[tuple], jobs: int) -> Iterable[Combination]:
    """Run `_run_one(*call)` for each call, `jobs` at a time; yields them as they finish.
    Processes, not threads: papermill changes the working directory of the whole process
    while it starts a kernel, so two threads would start kernels in each other's folders."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for future in as_completed([pool.submit(_run_one, *call) for call in calls]):
            yield future.result()


def run_batch(
    template: str | os.PathLike,
    grid: str | os.PathLike | Mapping[str, Any],
    *,
    out: str | os.PathLike = "batch-runs",
    jobs: int = 1,
    kernel: str | None = None,
    timeout: float | None = None,
    rerun: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
):
    """Run `template` once per grid combination; returns the index as a DataFrame.
    `engine="ray"` runs each combination as a task on Ray (a local cluster started on
    demand, or the one at `ray_address`; `jobs` is then the cluster's business)."""
    import pandas as pd

    template = Path(template)
    if not template.is_file():
        raise ConfigError(f"template {template}: no such file")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if ray_address is not None:
        engine = "ray"
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine must be 'local' or 'ray', got {engine!r}")
    params_list = load_grid(grid)
    declared = check_parameters(template, params_list)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_index(out)
    secrets = secret_values()
    combos: list[Combination] = []
    for params in params_list:
        key = fingerprint({"template": template.name, "params": params}, 16)
        combo = Combination(params=params, name=combination_name(template, params), key=key)
        done = previous.get(key)
        if done and done.get("status") == "ok" and not rerun and Path(done["notebook"]).exists():
            combo = Combination(**{**done, "status": "ok"})
            combo.status = "skipped"
        combos.append(combo)
    here = Path.cwd()
    calls = [
        (template, c, absolute_inputs(c.params, declared, here), out, kernel, timeout)
        for c in combos
        if c.status == "pending"
    ]
    by_key = {c.key: c for c in combos}
    if engine == "ray":  # each combination a Ray task (papermill in the worker)
        from forgekit.distributed.batch import run_on_ray

        finishing = run_on_ray(_run_one, calls, address=ray_address)
    else:
        finishing = _run_in_processes(calls, jobs)
    for finished in finishing:
        by_key[finished.key].__dict__.update(finished.__dict__)
        _write_index(out, combos, secrets)  # progress survives an interrupted batch
    _write_index(out, combos, secrets)
    shutil.rmtree(out / ".scratch", ignore_errors=True)
    df = pd.DataFrame([asdict(c) for c in combos])
    counts = df["status"].value_counts().to_dict()
    failed = int(counts.get("failed", 0))
    verdict = f"{failed} of {len(df)} combination(s) FAILED" if failed else "all ok"
    df.attrs["forgekit"] = {
        "summary": f"batch {template.name}: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f"; {verdict} -> {out / 'index.jsonl'}",
        "failed": failed,
        "total": len(df),
        "index": str(out / "index.jsonl"),
        "template": str(template),
    }
    return df
