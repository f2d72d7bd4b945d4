"""`forge batch --ray [ADDRESS]`: each notebook combination as a Ray task, papermill in the
worker. The batch module keeps its index, resume and failure records exactly as in local
mode; this only decides where `_run_one` runs and hands the combinations back as they end.

The output folder must be one every worker sees (the same machine, or a shared file system
on a cluster). Workers get the driver's forgekit settings and API keys through their
environment: settings through the runtime_env, credentials by object-store reference only
(see forgekit.distributed.cluster), never as task arguments or in a runtime_env.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from forgekit.distributed.cluster import (
    connect,
    require_ray,
    secret_env,
    worker_env,
    worker_secrets,
    working_directory,
)

POLL_S = 0.5


def _in_driver_context(
    run_one: Callable[..., Any], secrets: dict[str, str], cwd: str, *call: Any
) -> Any:
    """In the worker: `run_one(*call)` with the driver's credentials in the environment (the
    notebook's kernel inherits them) and in the driver's working directory (the batch's
    relative paths, and the index's, mean the same as in local mode)."""
    with secret_env(secrets), working_directory(cwd):
        return run_one(*call)


def run_on_ray(
    run_one: Callable[..., Any], calls: list[tuple], *, address: str | None = None
) -> Iterator[Any]:
    """`run_one(*call)` for every call as a Ray task (one CPU each); yields each result as
    it finishes. A worker that dies takes only its combination, recorded as failed."""
    if not calls:
        return
    ray = require_ray()
    connect(address)
    remote = ray.remote(_in_driver_context)
    # Kernels started by a worker have no front end: text progress, not widgets.
    env = worker_env({"FORGEKIT_NO_WIDGETS": "1"})
    secrets = ray.put(worker_secrets())  # by reference: never in a log or a task spec
    pending = {
        remote.options(
            name=f"forge batch {call[1].name}",
            num_cpus=1,
            max_retries=0,  # a re-run of the batch resumes; a half-run notebook is not retried
            runtime_env={"env_vars": env},
        ).remote(run_one, secrets, os.getcwd(), *call): call
        for call in calls
    }
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for ref in done:
            call = pending.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker or its node died
                combo = call[1]
                combo.status = "failed"
                combo.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                yield combo
