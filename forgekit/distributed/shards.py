"""Sharded method runs: any method as N shards on Ray, merged into the result a local run gives.

`forgekit.methods.<name>(..., engine="ray", shards=4, ray_address=None)` (or `--ray [ADDRESS]
--shards N` on the command line and in the magics, `run: {engine: ray, shards: 4}` in YAML)
comes here from the method runner. How the work is split:

- A method over input items: shard k runs the method on the contiguous slice
  [lo_k, hi_k) of the work items the method prepared, deterministically by item index, so
  its records carry the ids a local run gives them. An `n` ("at most n records") is split
  across the shards.
- A method that generates until it has `n` records (Magpie, Self-Instruct): shard k makes
  its share of `n` with its own seed (seed + k * SEED_STRIDE), so shards never repeat each
  other's requests.
- Each shard gets a share of the run's limits: concurrency, rpm, tpm, max_requests,
  max_total_tokens and max_cost divided by the number of shards.

With `out=`, shard k writes `<out>.parts/shard-0000k.jsonl` (with its own errors file and
manifest) — the engine's usual store, so a killed worker loses only its in-flight items and a
re-run resumes every shard where its part ends. When the shards end, the parts are merged
into `out` (shard order, then each shard's item order: the order of a local run) with one
manifest that adds up every shard. `<out>.parts/plan.json` pins the number of shards: a
re-run with another number is refused rather than re-doing work.

A shard worker gets the options and paths by value, settings in its runtime_env, and API keys
by object-store reference only (Ray logs runtime_envs and records task arguments; see
forgekit.distributed.cluster).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint
from forgekit.distributed.cluster import connect, require_ray, worker_env, worker_secrets
from forgekit.distributed.shard_board import ShardBoard
from forgekit.distributed.shard_merge import DriverView, merge_shards, move_aside, read_plan
from forgekit.distributed.shard_worker import REPORT_EVERY_S, ShardSpec, run_shard
from forgekit.engine import RunConfig, run_sync
from forgekit.engine.store import write_json_atomic
from forgekit.errors import ConfigError, StoreError
from forgekit.methods.runner import prepare_call, read_input
from forgekit.methods.spec import Method, options_of
from forgekit.secrets import SECRET_NAME

SEED_STRIDE = 1_000_003  # shard k of a generating method uses seed + k * SEED_STRIDE


def split_int(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal whole shares, the larger ones first."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def parts_dir(out: str | Path) -> Path:
    return Path(out).with_name(Path(out).name + ".parts")


@dataclass
class Prepared:
    """The driver's own preparation of the call: checks everything before any shard starts,
    and tells how the work splits."""

    method: Method
    models: Any
    items: Any
    job: dict[str, Any]


@dataclass
class ShardPlan:
    """How a call splits: shard count, slices or option changes per shard."""

    count: int
    slices: list[tuple[int, int]] | None  # None: a generating method (whole stream each)
    overrides: list[dict[str, Any]]
    total: int | None  # records the whole run aims at (the progress total)


def plan_shards(cls: type[Method], prepared: Prepared, wanted: int) -> ShardPlan:
    """Split the prepared call into at most `wanted` shards (see the module doc)."""
    method, items = prepared.method, prepared.items
    limit = method.limit
    generating = cls.inputs == "none" or not isinstance(items, Sequence)
    if generating:
        if limit is None:
            raise ConfigError(f"{cls.name}: a sharded run of a generating method needs n=")
        if not any(f.name == "seed" for f, _ in options_of(cls.Options)):
            raise ConfigError(f"{cls.name} has no seed option: its shards would repeat each other")
        count = max(1, min(wanted, limit))
        seed = method.options.seed
        overrides = [
            {"n": share, "seed": seed + k * SEED_STRIDE}
            for k, share in enumerate(split_int(limit, count))
        ]
        return ShardPlan(count, None, overrides, limit)
    total = len(items)
    count = max(1, min(wanted, total, limit if limit else total))
    bounds = [0]
    for size in split_int(total, count):
        bounds.append(bounds[-1] + size)
    slices = list(pairwise(bounds))
    overrides = [{"n": share} for share in split_int(limit, count)] if limit else [{}] * count
    return ShardPlan(count, slices, overrides, min(total, limit) if limit else total)


def share_config(config: RunConfig, count: int, default_concurrency: int) -> list[RunConfig]:
    """Each shard's RunConfig: a share of every global limit, no live hooks, no progress bar
    (the driver shows one for the whole run)."""
    concurrency = split_int(config.concurrency or default_concurrency, count)

    def per_shard(value: Any, k: int) -> Any:
        if value is None:
            return None
        if isinstance(value, int):
            return split_int(value, count)[k]
        return value / count

    return [
        replace(
            config,
            concurrency=max(1, concurrency[k]),
            rpm=per_shard(config.rpm, k),
            tpm=per_shard(config.tpm, k),
            max_requests=per_shard(config.max_requests, k),
            max_total_tokens=per_shard(config.max_total_tokens, k),
            max_cost=per_shard(float(config.max_cost), k) if config.max_cost is not None else None,
            overwrite=False,  # the driver moved old files aside once, for all shards
            progress=False,
            on_event=[],
            cancel_event=None,
            progress_factory=None,
            description=f"{config.description or 'shard'} {k + 1}/{count}",
            engine="local",
            shards=None,
            ray_address=None,
        )
        for k in range(count)
    ]


def check_portable(cls: type[Method], model: Any, kwargs: dict[str, Any]) -> None:
    """Models go to the workers by profile name: a Model object holding a key would put the
    key into Ray's task arguments (stored and logged by Ray)."""
    named = [("model", model)]
    for field, info in options_of(cls.Options):
        if info.kind == "model" and field.name in kwargs:
            value = kwargs[field.name]
            named += [(field.name, v) for v in (value if isinstance(value, tuple) else (value,))]
    for name, value in named:
        if value is None or isinstance(value, str):
            continue
        if _carries_key(value):
            raise ConfigError(
                f"{cls.name}: with engine='ray', pass {name} as a profile name, not a Model "
                f"object: its API key would travel in Ray's task arguments"
            )


def _carries_key(model: Any) -> bool:
    """Whether a model object holds a credential: a field (or a field of a dict field, like
    an SDK client's options) named like a key, with a real value."""
    fields = dict(vars(model)) if hasattr(model, "__dict__") else {}
    for name, value in list(fields.items()):
        if isinstance(value, dict):
            fields.update({f"{name}.{k}": v for k, v in value.items()})
    return any(
        SECRET_NAME.search(name) and isinstance(value, str) and value not in ("", "not-needed")
        for name, value in fields.items()
    )


def run_sharded(
    cls: type[Method],
    data: Any,
    kwargs: dict[str, Any],
    *,
    model: Any,
    out: Any,
    config: RunConfig,
):
    """Run the call on Ray as shards; the merged DataFrame (see the module doc)."""
    ray = require_ray()
    check_portable(cls, model, kwargs)
    records = read_input(cls, data)
    prepared = Prepared(*prepare_call(cls, records, dict(kwargs), model))  # checks, no request
    run_sync(prepared.models.aclose)
    info = connect(config.ray_address)
    plan = plan_shards(cls, prepared, config.shards or max(1, int(info.num_cpus)))
    job_key = fingerprint(prepared.job, 16)
    out_path = Path(out) if out else None
    parts = _prepare_parts(out_path, plan, job_key, config.overwrite)
    configs = share_config(config, plan.count, prepared.models.main.default_concurrency)
    specs = [
        ShardSpec(
            index=k,
            count=plan.count,
            method=cls,
            kwargs=dict(kwargs),
            model=model,
            config=configs[k],
            part=str(parts[k]) if parts else None,
            lo=plan.slices[k][0] if plan.slices else None,
            hi=plan.slices[k][1] if plan.slices else None,
            report_input_errors=k == 0,
            overrides=plan.overrides[k],
            run=str(out_path.resolve()) if out_path else job_key,
            cwd=os.getcwd(),
        )
        for k in range(plan.count)
    ]
    board, run = _board(ray), specs[0].run
    ray.get(board.open.remote(run, plan.count))
    view = DriverView(config, plan.total, out_path, cls.name)
    try:
        outcomes, interrupted = _drive(ray, cls, specs, records, board, view)
        snapshot = ray.get(board.snapshot.remote(run, 0))
    finally:
        board.close.remote(run)
    result, summary, raised = merge_shards(
        specs, outcomes, snapshot, out_path, prepared, config, view.started_at
    )
    view.end(result)
    if interrupted:
        raise KeyboardInterrupt()
    if raised is not None:
        raise raised
    return result.to_dataframe(method=cls.name, **summary)


_boards: dict[str, Any] = {}  # Ray job id -> this driver's ShardBoard actor


def _board(ray: Any) -> Any:
    """This driver's ShardBoard, started on first use (it lives as long as the driver)."""
    job = ray.get_runtime_context().get_job_id()
    if job not in _boards:
        _boards.clear()  # a board of an earlier connection died with it
        actor = ray.remote(ShardBoard).options(num_cpus=0, name=f"forgekit-shard-board-{job}")
        _boards[job] = actor.remote()
    return _boards[job]


def shard_worker_pids(out: str | Path) -> dict[int, int]:
    """The pid of the worker process of each running shard of the sharded run writing
    `out` (shard index -> pid); empty when no such run is going on in this process."""
    ray = require_ray()
    return ray.get(_board(ray).worker_pids.remote(str(Path(out).resolve())))


def _prepare_parts(
    out: Path | None, plan: ShardPlan, job_key: str, overwrite: bool
) -> list[Path] | None:
    """The part files, after checking (or moving aside) what an earlier run left."""
    if out is None:
        return None
    folder = parts_dir(out)
    if overwrite:
        move_aside(out, folder)
    previous = read_plan(folder)
    if previous is None and out.exists() and out.stat().st_size > 0:
        raise StoreError(
            f"{out} was written by a local (unsharded) run; resume it without engine='ray', "
            f"or pass overwrite to move it aside"
        )
    if previous is not None:
        if previous.get("job_key") != job_key:
            raise StoreError(
                f"{folder} holds the parts of a different job; choose another output path, "
                f"or pass overwrite to move the old files aside"
            )
        if previous.get("shards") != plan.count:
            raise ConfigError(
                f"{out} was started with {previous.get('shards')} shards and this run would "
                f"use {plan.count}; resume with shards={previous.get('shards')}, or pass "
                f"overwrite to start afresh"
            )
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        folder / "plan.json",
        {"job_key": job_key, "shards": plan.count, "total": plan.total, "slices": plan.slices},
    )
    return [folder / f"shard-{k:05d}.jsonl" for k in range(plan.count)]


def _drive(ray: Any, cls: type[Method], specs: list[ShardSpec], records, board, view):
    """Launch the shards and follow them until every one has ended; per shard its outcome
    (the worker's answer, or the exception that ended it), and whether the user interrupted."""
    task = ray.remote(run_shard)
    env = worker_env()
    records_ref = ray.put(records)
    secrets_ref = ray.put(worker_secrets())  # by reference: never in a log or a task spec
    refs = {
        task.options(
            name=f"forgekit {cls.name} shard {s.index + 1}/{s.count}",
            num_cpus=1,
            max_retries=0,  # a lost shard is resumed by the user's re-run, from its part file
            runtime_env={"env_vars": env},
        ).remote(s, records_ref, board, secrets_ref): s.index
        for s in specs
    }
    outcomes: dict[int, Any] = {}
    pending = list(refs)
    seen_errors = 0
    interrupted = False
    cancel_sent = False
    view.start()
    while pending:
        try:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=REPORT_EVERY_S)
            for ref in done:
                outcomes[refs[ref]] = _outcome(ray, ref)
            snapshot = ray.get(board.snapshot.remote(specs[0].run, seen_errors))
            seen_errors += len(snapshot["errors"])
            view.update(snapshot)
            cancel = view.config.cancel_event
            if cancel is not None and cancel.is_set() and not cancel_sent:
                board.cancel.remote(specs[0].run)
                cancel_sent = True
        except KeyboardInterrupt:
            # Stop the shards cleanly (their finished records stay in the parts), then merge.
            interrupted = True
            if not cancel_sent:
                board.cancel.remote(specs[0].run)
                cancel_sent = True
    return outcomes, interrupted


def _outcome(ray: Any, ref: Any) -> Any:
    """The shard's answer, or the exception that ended it (a worker that died, or the
    error the shard raised)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, BaseException) else exc
    except ray.exceptions.RayError as exc:  # the worker process or its node died
        return exc
