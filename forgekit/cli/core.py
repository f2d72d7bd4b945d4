"""`forge models` and `forge config`."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from forgekit.cli.options import add_model_option
from forgekit.config import config_path, default_model_name, get_profile, list_profiles
from forgekit.engine.cache import default_cache_path
from forgekit.evaluate.minhash.native import status as minhash_kernels_status


def _cmd_models(args: argparse.Namespace, ctx: Any) -> Any:
    import pandas as pd

    rows = []
    profiles = list_profiles()
    for name, profile in profiles.items():
        row = {
            "name": name,
            "provider": profile.provider,
            "model": profile.model,
            "endpoint": profile.base_url
            or ("in-process" if profile.provider == "local" else "api.openai.com"),
            "template": profile.template,
        }
        if args.check:
            row["reachable"] = _reachable(name)
        rows.append(row)
    return pd.DataFrame(rows)


def _reachable(name: str) -> str:
    """A cheap liveness probe: load the local model, or list an endpoint's models."""
    profile = get_profile(name)
    try:
        if profile.provider == "local":
            from forgekit.models.local import find_smollm2_gguf

            path = profile.model_path or find_smollm2_gguf()
            return f"yes ({path.name if hasattr(path, 'name') else path})"
        from forgekit.models import model_from_profile

        model = model_from_profile(profile)

        async def probe() -> str:
            try:
                await model.client.models.list()  # type: ignore[attr-defined]
                return "yes"
            finally:
                await model.aclose()

        return asyncio.run(probe())
    except Exception as exc:  # any failure is the answer here, not an error
        return f"no ({type(exc).__name__}: {str(exc)[:80]})"


def _cmd_config(args: argparse.Namespace, ctx: Any) -> Any:
    source = config_path()
    name = args.model or default_model_name()
    return {
        "config_file": str(source) if source else None,
        "default_model": default_model_name(),
        "active_profile": get_profile(name).public(),
        "cache": str(default_cache_path()),
        # whether MinHash runs its C kernels here, or numpy and why
        "minhash": minhash_kernels_status(),
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser(
        "models",
        help="list configured model profiles",
        description="List the model profiles forgekit knows (built-ins and the config file).",
    )
    models.add_argument(
        "--check", action="store_true", help="also probe whether each model is reachable"
    )
    models.set_defaults(handler=_cmd_models)

    config = subparsers.add_parser(
        "config",
        help="show the active configuration (never secrets)",
        description="Show the config file in use, the active model profile and whether MinHash "
        "uses its C kernels. API keys are never shown; `api_key_set` says whether the key "
        "variable is set.",
    )
    add_model_option(config)
    config.set_defaults(handler=_cmd_config)
