"""A batch's parameter grid: a YAML file (or mapping) expanded into parameter combinations,
each named, checked against the template's declared parameters, and its input paths made
absolute for the folder it runs in (see forgekit.batch for the grid format)."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from forgekit.data.records import fingerprint
from forgekit.errors import ConfigError
from forgekit.secrets import find_secrets, secret_values

# Words of a parameter name that mark a credential. Whole words: `max_tokens` (a parameter
# of nearly every template) and `keywords` are not secrets; `api_key`, `hf_token` are.
_SECRET_WORDS = {"key", "keys", "apikey", "token", "secret", "password", "passwd"}


def _names_a_secret(name: str) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()  # apiKey -> api_key
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", words))


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
