"""The quality gate every method shares: `target=N` keeps producing until N records pass every
validator, and `accept=` / `min_score=` filter records on their own.

A record passes when:
* the method's own check did not fail it (e.g. generate's JSON/schema parse:
  `metadata.parse.ok` is False for an answer that is not valid under the schema);
* its score is at least `min_score` (methods that score their records: judge's quality,
  dpo's chosen rating — `Method.score`);
* `accept(record)` returns true (any Python callable).

With `target`, the run's main stages stop once N records passed; records that fail are
counted by reason and left out. The attempts are bounded by the run's budgets (max_requests,
max_total_tokens, max_cost) and by `target_factor` x N attempts; a method over a finite input
(judge, translate, ...) stops when the input runs out, and the shortfall is reported. The
runner (forgekit.methods.runner) declares these options once for every method.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.engine.requests import StopRun
from forgekit.engine.store import sidecar, write_json_atomic
from forgekit.errors import BudgetExceededError, ConfigError

# Keywords every method accepts (besides its own options and the engine's RunConfig fields).
GATE_OPTIONS = ("target", "accept", "min_score", "target_factor")


@dataclass(frozen=True)
class GateOptions:
    target: int | None = None
    accept: Callable[[dict[str, Any]], Any] | None = None
    min_score: float | None = None
    target_factor: float = 10.0

    @classmethod
    def take(cls, method: Any, kwargs: dict[str, Any]) -> GateOptions:
        """Take the gate options out of `kwargs`, checked against `method` (a Method class)."""
        options = cls(**{k: kwargs.pop(k) for k in GATE_OPTIONS if kwargs.get(k) is not None})
        name = method.name
        if options.target is not None and (
            not isinstance(options.target, int) or options.target < 1
        ):
            raise ConfigError(f"{name}: target must be a whole number >= 1, got {options.target}")
        if options.target_factor < 1:
            raise ConfigError(f"{name}: target_factor must be >= 1, got {options.target_factor}")
        if options.accept is not None and not callable(options.accept):
            raise ConfigError(f"{name}: accept must be a callable record -> bool")
        if options.min_score is not None and not method.has_scores():
            raise ConfigError(
                f"{name}: min_score needs a method that scores its records (judge: quality "
                f"1-5, dpo: the chosen response's rating); {name} does not"
            )
        return options

    @property
    def active(self) -> bool:
        return self.target is not None or self.accept is not None or self.min_score is not None

    @property
    def max_attempts(self) -> int | None:
        return None if self.target is None else math.ceil(self.target * self.target_factor)


class Gate:
    """One call's gate: wraps the main stages' produce, counts attempts and rejections."""

    def __init__(self, options: GateOptions, score: Callable[[dict[str, Any]], Any]) -> None:
        self.options = options
        self.score = score
        self.attempts = 0
        self.rejected: Counter[str] = Counter()

    def check(self, record: dict[str, Any]) -> str | None:
        """Why `record` fails the gate ('parse', 'min_score', 'accept'), or None."""
        o = self.options
        parse = (record.get("metadata") or {}).get("parse")
        if isinstance(parse, dict) and parse.get("ok") is False:
            return "parse"
        if o.min_score is not None:
            score = self.score(record)
            if score is None or score < o.min_score:
                return "min_score"
        if o.accept is not None and not o.accept(record):
            return "accept"
        return None

    def wrap(self, produce: Callable[..., Any]) -> Callable[..., Any]:
        async def gated(ctx: Any, item: Any) -> dict[str, Any] | None:
            try:
                record = await produce(ctx, item)
            except (BudgetExceededError, StopRun):
                raise  # the run stops here: not an attempt
            except Exception:
                self.attempts += 1
                raise
            self.attempts += 1
            reason = "method" if record is None else self.check(record)
            if reason is not None:
                self.rejected[reason] += 1
                return None
            return record

        return gated

    def bound(
        self, items: Sequence[Any] | Iterable[Any], limit: int | None, passed: int
    ) -> tuple[Sequence[Any] | Iterable[Any], int | None]:
        """A main stage's items and record limit under the target: at most the attempts
        left, and the records still missing (`passed`: those the call already has)."""
        o = self.options
        if o.target is None:
            return items, limit
        left = max(0, (self.options.max_attempts or 0) - self.attempts)
        if isinstance(items, Sequence):
            items = items[:left]
        else:
            items = itertools.islice(items, left)
        return items, max(0, o.target - passed)

    def summary(
        self, passed: int, status: str, stop_reason: str | None, announce: bool = True
    ) -> dict[str, Any]:
        """The gate's counts; a shortfall is also printed to stderr when `announce` (a
        sharded run's shards do not: the driver prints the run's one shortfall)."""
        o = self.options
        out: dict[str, Any] = {
            "target": o.target,
            "passed": passed,
            "attempts": self.attempts,
            "rejected": dict(self.rejected),
        }
        if o.min_score is not None:
            out["min_score"] = o.min_score
        if o.target is None:
            return out
        out.update(max_attempts=o.max_attempts, reached=passed >= o.target)
        if passed < o.target:
            if stop_reason:
                why = f"stopped: {stop_reason}"
            elif self.attempts >= (o.max_attempts or 0):
                why = f"the attempt cap target x target_factor = {o.max_attempts} was reached"
            else:
                why = "the input ran out"
            out["shortfall"] = (
                f"target {o.target} not reached: {passed} records passed in "
                f"{self.attempts} attempts; {why}"
            )
            if announce:
                print(f"forgekit: {out['shortfall']}", file=sys.stderr)
        return out


def record_in_manifest(out: Path | None, summary: dict[str, Any]) -> None:
    """Add the gate's counts to the manifest beside `out` (what N records cost)."""
    path = sidecar(Path(out), "manifest") if out else None
    if path is None or not path.exists():
        return
    manifest = json.loads(path.read_text(encoding="utf-8"))
    write_json_atomic(path, {**manifest, "gate": summary})
