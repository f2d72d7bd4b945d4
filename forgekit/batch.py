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

import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forgekit.batch_report import failure_report, plain_text  # noqa: F401 - re-exported
from forgekit.data.records import fingerprint
from forgekit.errors import ConfigError, ForgeError
from forgekit.secrets import find_secrets, scrub, secret_values

# Words of a parameter name that mark a credential. Whole words: `max_tokens` (a parameter
# of nearly every template) and `keywords` are not secrets; `api_key`, `hf_token` are.
_SECRET_WORDS = {"key", "keys", "apikey", "token", "secret", "password", "passwd"}


def _names_a_secret(name: str) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()  # apiKey -> api_key
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", words))


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


# -- grids --------------------------------------------------------------------------------
def load_grid(grid: str | os.PathLike | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand a grid (a YAML path or a mapping) into a list of parameter dicts."""
    source = str(grid) if not isinstance(grid, Mapping) else "grid"
    if not isinstance(grid, Mapping):
        path = Path(grid)
        if not path.is_file():
            raise ConfigError(f"--grid {path}: no such file")
        try:
            grid = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(grid, Mapping):
        raise ConfigError(f"{source}: expected a mapping with product / cases / fixed")
    unknown = set(grid) - {"product", "cases", "fixed"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {sorted(unknown)}; a grid has product, cases and fixed"
        )
    fixed = dict(grid.get("fixed") or {})
    product = grid.get("product") or {}
    if not isinstance(product, Mapping):
        raise ConfigError(f"{source}: product must map parameter names to lists")
    for name, values in product.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: product.{name} must be a non-empty list")
    combos: list[dict[str, Any]] = []
    if product:
        names = list(product)
        for values in itertools.product(*(product[n] for n in names)):
            combos.append({**fixed, **dict(zip(names, values))})
    for index, case in enumerate(grid.get("cases") or []):
        if not isinstance(case, Mapping):
            raise ConfigError(f"{source}: cases[{index}] must be a mapping of parameters")
        combos.append({**fixed, **case})
    if not combos:
        combos = [fixed] if fixed else []
    if not combos:
        raise ConfigError(f"{source}: the grid defines no combination")
    unique = {fingerprint(c, 16): c for c in combos}
    return list(unique.values())


def _slug(value: Any) -> str:
    text = str(value)
    keep = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)
    return keep.strip("-")[:24] or "x"


def combination_name(template: Path, params: Mapping[str, Any]) -> str:
    parts = [
        f"{k}-{_slug(v)}" for k, v in sorted(params.items()) if not isinstance(v, (dict, list))
    ]
    readable = "_".join(parts)[:80]
    return (
        f"{template.stem}_{readable}_{fingerprint(params, 6)}"
        if readable
        else (f"{template.stem}_{fingerprint(params, 6)}")
    )


# -- checks -------------------------------------------------------------------------------
def template_parameters(template: Path) -> dict[str, Any]:
    """The template's documented parameters (papermill's own inspection)."""
    import papermill

    try:
        return papermill.inspect_notebook(str(template))
    except Exception as exc:  # nbformat / papermill raise various types
        raise ConfigError(f"{template}: not a readable notebook ({exc})") from None


def check_parameters(template: Path, combos: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Refuse unknown and secret-looking parameters; returns the declared ones."""
    declared = template_parameters(template)
    if not declared:
        raise ConfigError(f"{template}: no cell tagged 'parameters'")
    secrets = secret_values()
    for combo in combos:
        unknown = set(combo) - set(declared)
        if unknown:
            raise ConfigError(
                f"grid parameter(s) {sorted(unknown)} are not parameters of {template.name}; "
                f"it has: {', '.join(declared)}"
            )
        for name, value in combo.items():
            if _names_a_secret(name) or find_secrets(json.dumps(value, default=str), secrets):
                raise ConfigError(
                    f"parameter {name!r}: secrets are never notebook parameters (papermill "
                    f"writes every parameter into the output notebook); set the key in the "
                    f"environment or .env and let the template read it"
                )
    return declared


def absolute_inputs(
    params: Mapping[str, Any], declared: Mapping[str, Any], base: Path
) -> dict[str, Any]:
    """The parameters a combination's notebook gets. It runs in a folder of its own, where a
    file named relative to the folder the batch was started from does not exist; so a value
    of a parameter whose default is empty (the templates' optional inputs: input_path,
    docs_dir, seed_tasks; or a list, such as benchmarks) that names an existing file or folder
    under `base` is passed as an absolute path. Outputs (`out`, with a file name as default)
    stay in the combination's folder; the index keeps the values as written in the grid."""
    given = dict(params)

    def absolute(value: Any) -> Any:
        path = Path(value) if isinstance(value, str) and value else None
        if path is None or path.is_absolute() or not (base / path).exists():
            return value
        return str((base / path).resolve())

    for name, value in params.items():
        default = (declared.get(name) or {}).get("default")
        if default in ('""', "''"):
            given[name] = absolute(value)
        elif default == "[]" and isinstance(value, list):  # a list of files (benchmarks)
            given[name] = [absolute(v) for v in value]
    return given


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
    except Exception as exc:  # the notebook's own failure: recorded, never fatal to the batch
        combo.status = "failed"
        combo.error, combo.error_cell, combo.traceback = _error_summary(exc, secrets)
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
