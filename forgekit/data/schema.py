"""JSON values in text and JSON schemas: the JSON a model wrote (bare, fenced or inside
prose), a validator for a JSON-schema dict or a pydantic model class, and a schema read from
a file or from JSON text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from forgekit.errors import ConfigError

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in a response: the whole text, a ```json fence, or the first balanced
    {...} / [...] span. Raises ValueError when there is none."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    for start, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text[start:])
                return value
            except ValueError:
                continue
    raise ValueError("no JSON object or array in the response")


def schema_validator(schema: Any) -> Callable[[Any], Any]:
    """A validator for a JSON-schema dict or a pydantic model class."""
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        BaseModel = None  # type: ignore[assignment]
    if BaseModel is not None and isinstance(schema, type) and issubclass(schema, BaseModel):

        def check_model(value: Any) -> Any:
            from pydantic import ValidationError

            try:
                return schema.model_validate(value).model_dump(mode="json")
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "(root)"
                raise ValueError(f"schema: {where}: {err['msg']}") from None

        return check_model
    if isinstance(schema, Mapping):
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"schema is not a valid JSON schema: {exc.message}") from None
        validator = jsonschema.validators.validator_for(schema)(schema)

        def check_schema(value: Any) -> Any:
            error = next(iter(sorted(validator.iter_errors(value), key=str)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                raise ValueError(f"schema: {where}: {error.message}")
            return value

        return check_schema
    raise ConfigError(
        f"schema must be a JSON-schema dict or a pydantic model class, got {type(schema).__name__}"
    )


def json_schema_of(schema: Any) -> dict[str, Any]:
    """The JSON-schema dict of a schema dict or a pydantic model class (what a model is sent)."""
    if isinstance(schema, Mapping):
        return dict(schema)
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()
    raise ConfigError(
        f"schema must be a JSON-schema dict or a pydantic model class, got {type(schema).__name__}"
    )


def schema_from_text(value: str) -> dict[str, Any]:
    """A JSON schema from a file path or from JSON text (the command line's --schema)."""
    path = Path(value)
    try:
        schema = json.loads(path.read_text(encoding="utf-8") if path.is_file() else value)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--schema {value}: not a JSON-schema file or JSON text ({exc})"
        ) from None
    if not isinstance(schema, dict):
        raise ConfigError(f"--schema {value}: a JSON schema must be an object")
    return schema
