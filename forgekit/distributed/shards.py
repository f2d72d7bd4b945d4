"""Sharded method runs: any method as N shards on Ray, merged into the result a local run gives.

`forgekit.methods.<name>(..., engine="ray", shards=4, ray_address=None)` (or `--ray [ADDRESS]
--shards N` on the command line and in the magics, `run: {engine: ray, shards: 4}` in YAML)
comes here from the method runner. How the work is split (forgekit.distributed.shard_plan):

- A method over input items: shard k runs the method on the contiguous slice
  [lo_k, hi_k) of the work items the method prepared, deterministically by item index, so
  its records carry the ids a local run gives them. An `n` ("at most n records") is split
  across the shards.
- A method that generates until it has `n` records (Magpie, Self-Instruct): shard k makes
  its share of `n` with its own seed (seed + k * SEED_STRIDE), so shards never repeat each
  other's requests. A method that drops repeats (Magpie's instructions) claims each key on
  the run's board, so the merged output has no repeat across shards either; a resumed run
  first seeds the claims with the keys of the records already in the parts.
- The quality gate (`target=`, `accept=`, `min_score=`): each shard gates its own records,
  and a target is split like `n`; generate's endless stream under a target is interleaved
  (shard k takes items k, k + N, ...). The manifest's `gate` adds up every shard's.
- Each shard gets a share of the run's limits: concurrency, rpm, tpm, max_requests,
  max_total_tokens and max_cost divided by the number of shards.

With `out=`, shard k writes `<out>.parts/shard-0000k.jsonl` (with its own errors file and
manifest) — the engine's usual store, so a killed worker loses only its in-flight items: the
driver relaunches the shard (up to `shard_retries` times, forgekit.distributed.shard_drive),
which resumes where its part ends, and a re-run resumes every shard that still did not
finish. When the shards end, the parts are merged into `out` (shard order, then each shard's
item order: the order of a local run) with one manifest that adds up every shard.
`<out>.parts/plan.json` pins the number of shards: a re-run with another number is refused
rather than re-doing work.

A shard worker gets the options and paths by value, settings in its runtime_env, and API keys
by object-store reference only (Ray logs runtime_envs and records task arguments; see
forgekit.distributed.cluster).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint
from forgekit.distributed.cluster import connect, require_ray
from forgekit.distributed.shard_board import ShardBoard, claim_digest
from forgekit.distributed.shard_drive import drive
from forgekit.distributed.shard_merge import DriverView, merge_shards, move_aside, read_plan
from forgekit.distributed.shard_plan import (
    SEED_STRIDE,
    Prepared,
    ShardPlan,
    plan_shards,
    share_config,
    split_int,
)
from forgekit.distributed.shard_worker import ShardSpec
from forgekit.engine import RunConfig, run_sync
from forgekit.engine.store import write_json_atomic
from forgekit.errors import ConfigError, StoreError
from forgekit.methods.gate import GateOptions, record_in_manifest
from forgekit.methods.runner import prepare_call, read_input
from forgekit.methods.spec import Method, options_of
from forgekit.secrets import SECRET_NAME

__all__ = [
    "SEED_STRIDE",
    "Prepared",
    "ShardPlan",
    "parts_dir",
    "plan_shards",
    "run_sharded",
    "shard_worker_pids",
    "share_config",
    "split_int",
]


def parts_dir(out: str | Path) -> Path:
    return Path(out).with_name(Path(out).name + ".parts")


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
    gate: GateOptions | None = None,
):
    """Run the call on Ray as shards; the merged DataFrame (see the module doc)."""
    ray = require_ray()
    check_portable(cls, model, kwargs)
    records = read_input(cls, data)
    target = gate.target if gate is not None else None
    prepared = Prepared(*prepare_call(cls, records, dict(kwargs), model, target), gate=gate)
    run_sync(prepared.models.aclose)  # the driver's preparation checked everything
    info = connect(config.ray_address)
    plan = plan_shards(cls, prepared, config.shards or max(1, int(info.num_cpus)))
    job_key = fingerprint(prepared.job, 16)
    out_path = Path(out) if out else None
    parts = _prepare_parts(out_path, plan, job_key, config.overwrite)
    configs = share_config(config, plan.count, prepared.models.main.default_concurrency)
    interleaved = plan.step != 1
    specs = [
        ShardSpec(
            index=k,
            count=plan.count,
            method=cls,
            kwargs=dict(kwargs),
            model=model,
            config=configs[k],
            part=str(parts[k]) if parts else None,
            lo=k if interleaved else plan.slices[k][0] if plan.slices else None,
            hi=plan.slices[k][1] if plan.slices else None,
            step=plan.step,
            report_input_errors=k == 0,
            overrides=plan.overrides[k],
            run=str(out_path.resolve()) if out_path else job_key,
            cwd=os.getcwd(),
            gate=plan.gates[k] if plan.gates else None,
        )
        for k in range(plan.count)
    ]
    board, run = _board(ray), specs[0].run
    ray.get(board.open.remote(run, plan.count))
    view = DriverView(config, plan.total, out_path, cls.name)
    try:
        if cls.dedups() and parts:  # a resumed run: the parts' keys are taken already
            ray.get(board.seed_claims.remote(run, _claimed_keys(prepared.method, parts)))
        driven = drive(ray, specs, records, board, view)
        snapshot = ray.get(board.snapshot.remote(run, 0))
    finally:
        board.close.remote(run)
    result, summary, raised = merge_shards(
        specs,
        driven.outcomes,
        snapshot,
        out_path,
        prepared,
        config,
        view.started_at,
        driven.relaunches,
    )
    if gate is not None and gate.active:
        summary["gate"] = merged_gate(gate, summary["shards"])
        record_in_manifest(out_path, summary["gate"])
    view.end(result)
    if driven.interrupted:
        raise KeyboardInterrupt()
    if raised is not None:
        raise raised
    return result.to_dataframe(method=cls.name, **summary)


def _claimed_keys(method: Method, parts: list[Path]) -> list[bytes]:
    """The dedup keys of every record already in the parts (as the board keeps them). Only
    whole lines count: a line torn by a killed worker holds no record (its shard's store
    repairs it, and reports any other bad line when it opens the part)."""
    keys = []
    for part in parts:
        if not part.exists():
            continue
        with open(part, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line) if line.endswith("\n") and line.strip() else None
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    keys += [claim_digest(key) for key in method.dedup_keys(record)]
    return keys


def merged_gate(gate: GateOptions, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's gate summary: every shard's counts added up, each shard's beside them
    (with its status and stop reason); a shortfall names the shards that fell short."""
    per_shard = []
    for shard in shards:
        counts = shard.get("gate") or {"passed": shard["records"], "attempts": 0, "rejected": {}}
        status = {"shard": shard["shard"], "status": shard["status"]}
        per_shard.append({**status, "stop_reason": shard["stop_reason"], **counts})
    passed = sum(s["passed"] for s in per_shard)
    attempts = sum(s["attempts"] for s in per_shard)
    rejected: Counter[str] = Counter()
    for s in per_shard:
        rejected.update(s["rejected"])
    out: dict[str, Any] = {
        "target": gate.target,
        "passed": passed,
        "attempts": attempts,
        "rejected": dict(rejected),
    }
    if gate.min_score is not None:
        out["min_score"] = gate.min_score
    if gate.target is not None:
        out["max_attempts"] = sum(s.get("max_attempts") or 0 for s in per_shard)
        out["reached"] = passed >= gate.target
        if passed < gate.target:
            short = [
                f"shard {s['shard'] + 1}/{len(per_shard)}: {s.get('shortfall') or s['stop_reason']}"
                for s in per_shard
                if not s.get("reached")
            ]
            out["shortfall"] = (
                f"target {gate.target} not reached: {passed} records passed in {attempts} "
                f"attempts ({'; '.join(short)})"
            )
            print(f"forgekit: {out['shortfall']}", file=sys.stderr)
    out["shards"] = per_shard
    return out


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


def shard_reports(out: str | Path) -> dict[int, dict[str, Any]]:
    """The counters (a RunStats as a dict) each shard of the sharded run writing `out`
    last reported, a few times a second (shard index -> counters); empty when no such run
    is going on in this process."""
    ray = require_ray()
    return ray.get(_board(ray).reported.remote(str(Path(out).resolve())))


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
