"""How a sharded method run splits (see forgekit.distributed.shards for the whole story):
which items or which share of `n` each shard gets, its share of a gate's target, and its
share of every limit of the run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from forgekit.engine import RunConfig
from forgekit.errors import ConfigError
from forgekit.methods.gate import GateOptions
from forgekit.methods.spec import Method, options_of

SEED_STRIDE = 1_000_003  # shard k of a generating method uses seed + k * SEED_STRIDE


def split_int(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal whole shares, the larger ones first."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


@dataclass
class Prepared:
    """The driver's own preparation of the call: checks everything before any shard starts,
    and tells how the work splits."""

    method: Method
    models: Any
    items: Any
    job: dict[str, Any]
    gate: GateOptions | None = None  # the call's quality gate (None: no gate)


@dataclass
class ShardPlan:
    """How a call splits: shard count, slices or option changes per shard."""

    count: int
    slices: list[tuple[int, int]] | None  # None: a stream (whole, or interleaved by `step`)
    overrides: list[dict[str, Any]]
    total: int | None  # records the whole run aims at (the progress total)
    gates: list[GateOptions | None] | None = None  # each shard's gate (its share of a target)
    step: int = 1  # >1: shard k takes the stream's items k, k + step, ... (an endless stream)


def plan_shards(cls: type[Method], prepared: Prepared, wanted: int) -> ShardPlan:
    """Split the prepared call into at most `wanted` shards:

    - a method without input (Magpie, Self-Instruct) shares `n` (which is the target, when
      there is one), each shard with its own seed;
    - an endless stream over the input (generate's `target=`: every prompt, then each again
      with the next seed) is interleaved: shard k takes the items k, k + N, ..., keeping the
      ids (and, all passing, the records) a local run makes;
    - a list of items is cut into contiguous slices; `n` and a target are shared.

    A target is split like `n` (split_int): each shard gates its own records."""
    method, items = prepared.method, prepared.items
    gate = prepared.gate if prepared.gate is not None and prepared.gate.active else None
    target = gate.target if gate is not None else None
    limit = method.limit
    if cls.inputs == "none":
        if limit is None:
            raise ConfigError(f"{cls.name}: a sharded run of a generating method needs n=")
        if not any(f.name == "seed" for f, _ in options_of(cls.Options)):
            raise ConfigError(f"{cls.name} has no seed option: its shards would repeat each other")
        count = max(1, min(wanted, limit))
        seed = method.options.seed
        shares = split_int(limit, count)
        overrides = [{"n": share, "seed": seed + k * SEED_STRIDE} for k, share in enumerate(shares)]
        return ShardPlan(count, None, overrides, limit, gate_shares(gate, shares))
    if not isinstance(items, Sequence):
        if target is None:
            raise ConfigError(f"{cls.name}: a sharded run of an endless item stream needs target=")
        count = max(1, min(wanted, target))
        gates = gate_shares(gate, split_int(target, count))
        return ShardPlan(count, None, [{}] * count, target, gates, step=count)
    total = len(items)
    aim = min(total, limit or total, target or total)
    count = max(1, min(wanted, aim))
    bounds = [0]
    for size in split_int(total, count):
        bounds.append(bounds[-1] + size)
    slices = list(pairwise(bounds))
    overrides = [{"n": share} for share in split_int(limit, count)] if limit else [{}] * count
    gates = gate_shares(gate, split_int(target, count) if target else [0] * count)
    return ShardPlan(count, slices, overrides, aim, gates)


def gate_shares(gate: GateOptions | None, targets: list[int]) -> list[GateOptions | None]:
    """Each shard's gate: the same checks, and its share of the target (if any)."""
    if gate is None:
        return [None] * len(targets)
    if gate.target is None:
        return [gate] * len(targets)
    return [replace(gate, target=share) for share in targets]


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
