"""Starting or attaching to a Ray cluster, once per process.

`connect()` with no address starts a private local cluster (loopback only, no dashboard, quiet
logs, no usage-stats prompt); `connect("ray://host:10001")` or `connect("auto")` attaches to an
existing one. Calling it again is free: the running connection is reused. Everything that runs on
Ray in forgekit goes through here, so the same call works on a laptop and on a cluster.

What workers need from the driver's environment travels two ways: settings in the task's
runtime_env (`worker_env()`), credentials as an object-store reference (`worker_secrets()`,
applied in the worker by `secret_env`) — Ray logs every runtime_env with its values, so a key
must never be in one, nor in a task's arguments by value.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from forgekit.errors import ConfigError
from forgekit.secrets import SECRET_NAME

INSTALL_HINT = "Ray is not installed: pip install 'forgekit[ray]'"

# Variables a worker needs to behave like the driver: forgekit's own settings, provider
# endpoints and keys, Hugging Face settings, and anything that looks like a credential.
_FORWARDED = re.compile(
    r"^(FORGEKIT_|OPENAI_|ANTHROPIC_|HF_|HUGGING_FACE_|LLAMA_)"
    r"|(^|_)KEY($|_)|APIKEY|TOKEN|SECRET|PASSW|AUTH",
    re.IGNORECASE,
)
# Ray's own variables belong to the cluster, not to one job.
_NEVER_FORWARDED = re.compile(r"^RAY_", re.IGNORECASE)


@dataclass(frozen=True)
class ClusterInfo:
    """What `connect()` attached to."""

    address: str
    local: bool  # True when this process started the cluster
    num_cpus: float


_state: dict[str, Any] = {"info": None}
_LOCAL_START_ATTEMPTS = 3


def require_ray():
    """The `ray` module, or a ConfigError naming the extra to install."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is in the dev install
        raise ConfigError(INSTALL_HINT) from exc
    return ray


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    **opts: Any,
) -> ClusterInfo:
    """Start a local Ray cluster (`address=None`) or attach to `address`; idempotent.

    `num_cpus` and `object_store_memory` size a local cluster (ignored when attaching); other
    keyword options go to `ray.init` unchanged. Attaching to a different address while connected
    is an error: one process talks to one cluster.
    """
    ray = require_ray()
    current: ClusterInfo | None = _state["info"]
    if ray.is_initialized():
        if current is None:  # someone else called ray.init(): reuse their cluster
            current = _describe(ray, address or "external", local=False)
            _state["info"] = current
        if address and address not in (current.address, "auto"):
            raise ConfigError(
                f"already connected to the Ray cluster at {current.address}; cannot also "
                f"attach to {address} (call forgekit.distributed.shutdown() first)"
            )
        return current

    # Ray asks interactively about usage stats on first start and phones home otherwise.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init_kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
        "log_to_driver": True,
        "namespace": "forgekit",
    }
    if address:
        init_kwargs["address"] = address
    else:
        # Loopback only: a laptop's local cluster must not listen on the network.
        init_kwargs["_node_ip_address"] = "127.0.0.1"
        if num_cpus is not None:
            init_kwargs["num_cpus"] = num_cpus
        if object_store_memory is not None:
            init_kwargs["object_store_memory"] = object_store_memory
    init_kwargs.update(opts)
    try:
        context = _init(ray, init_kwargs, attempts=1 if address else _LOCAL_START_ATTEMPTS)
    except ConnectionError as exc:
        raise ConfigError(f"cannot attach to the Ray cluster at {address}: {exc}") from exc
    where = address or getattr(context, "address_info", {}).get("address", "local")
    info = _describe(ray, where, local=not address)
    _state["info"] = info
    return info


def _init(ray, kwargs: dict[str, Any], attempts: int):
    """ray.init; a local start that timed out is tried again with its agents' ports given up
    front (see `_agent_ports_given`; not the first time: with them, Ray's raylet logs a
    harmless but alarming "Failed to establish connection to the metrics exporter agent"
    when Ray's optional metrics packages are not installed)."""
    for attempt in range(1, attempts + 1):
        try:
            if "address" in kwargs or attempt == 1:
                return ray.init(**kwargs)
            with _agent_ports_given():
                return ray.init(**kwargs)
        except Exception as exc:
            if attempt == attempts or "timed out during startup" not in str(exc):
                raise
            logging.getLogger(__name__).warning("Ray start timed out; trying again")
            ray.shutdown()
    raise AssertionError("unreachable")


_AGENT_PORTS = (
    "metrics_agent_port",
    "metrics_export_port",
    "dashboard_agent_listen_port",
    "runtime_env_agent_port",
)


@contextmanager
def _agent_ports_given() -> Iterator[None]:
    """Start a local cluster with its agents' ports chosen up front. Left to choose their own,
    the agents write them to files, and Ray 2.60's raylet waits a fixed 15 s for those files,
    then aborts ("Timed out waiting for file ...metrics_agent_port"): a machine busy with
    other work often misses that. ray.init has no parameter for these ports, so its private
    RayParams is given them for the duration of the start (nothing changes if that class
    moves in a later Ray)."""
    try:
        from ray._private.parameter import RayParams
    except ImportError:  # pragma: no cover - another Ray layout: start as Ray does
        yield
        return
    original = RayParams.__init__
    ports = _free_ports(len(_AGENT_PORTS))

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for name, port in zip(_AGENT_PORTS, ports):
            if hasattr(self, name) and not getattr(self, name):
                setattr(self, name, port)

    RayParams.__init__ = init
    try:
        yield
    finally:
        RayParams.__init__ = original


def _free_ports(count: int) -> list[int]:
    """`count` loopback ports free right now (bound together, so all distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _describe(ray, address: str, *, local: bool) -> ClusterInfo:
    return ClusterInfo(
        address=address, local=local, num_cpus=float(ray.cluster_resources().get("CPU", 0))
    )


def is_connected() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def shutdown() -> None:
    """Disconnect (and stop the cluster if this process started it)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
    _state["info"] = None


def _driver_env() -> tuple[dict[str, str], dict[str, str]]:
    """(settings, credentials) of the driver's environment that workers need."""
    from forgekit.config import list_profiles, load_dotenv_once

    load_dotenv_once()
    names = {n for n in os.environ if _FORWARDED.search(n) and not _NEVER_FORWARDED.search(n)}
    try:
        keys = {p.api_key_env for p in list_profiles().values() if p.api_key_env}
    except ConfigError:
        keys = set()  # a broken config file is reported by the worker that reads it
    names = {n for n in names | keys if n in os.environ}
    secret = {n for n in names if n in keys or SECRET_NAME.search(n)}
    settings = {n: os.environ[n] for n in names - secret}
    return settings, {n: os.environ[n] for n in secret}


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's settings a worker needs and that are not secret: forgekit's variables,
    provider endpoints, Hugging Face settings, and PYTHONPATH (a checkout runs the same code
    on local workers). For `runtime_env={"env_vars": worker_env()}` on a task or actor.

    Credentials are left out: Ray's runtime_env agent logs every runtime_env it creates,
    values included (runtime_env_agent.log). They travel with `worker_secrets()`."""
    env = _driver_env()[0]
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(extra or {})
    return env


def worker_secrets() -> dict[str, str]:
    """The driver's credentials a worker needs: variables named like a key, token or secret,
    and the key variable each model profile names. Send them with `ray.put(...)` as a task
    argument: the task then carries only the object's id, the value stays in the object
    store's memory (never in a log or in the task's recorded spec), and the worker applies
    it with `secret_env`."""
    return _driver_env()[1]


@contextmanager
def secret_env(secrets: dict[str, str]) -> Iterator[None]:
    """In a worker: these variables set for the duration of one task, then restored (a Ray
    worker process may serve later tasks)."""
    saved = {name: os.environ.get(name) for name in secrets}
    os.environ.update(secrets)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def working_directory(path: str | None) -> Iterator[None]:
    """In a worker: run one task in the driver's working directory (when this node has it),
    so relative paths (inputs, `out`, a batch folder) mean what they mean to the caller."""
    previous = os.getcwd()
    if path and os.path.isdir(path):
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
