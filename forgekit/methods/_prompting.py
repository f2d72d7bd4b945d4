"""COMPAT (issue 12) — delete when the last method is converted to a declaration.

The old home of the prompting helpers. They now live by topic in forgekit.methods.prompting
(templates, the parse hook), forgekit.methods.parsing (labels, majority, ratings, yes/no) and
forgekit.methods.samplers; their command-line groups in forgekit.cli.legacy. Unconverted
methods still import them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forgekit.cli.legacy import (  # noqa: F401
    add_label_options,
    add_prompt_options,
    add_sampling_options,
    prompt_args,
)
from forgekit.errors import ConfigError
from forgekit.methods.parsing import (  # noqa: F401
    LabelSet,
    item_rng,
    normalize_text,
    parse_aliases,
)
from forgekit.methods.prompting import (  # noqa: F401
    PromptTemplate,
    ResponseParser,
    chat_messages,
    describe_item,
    extract_json,
    load_template,
    make_template,
    render_messages,
)
from forgekit.methods.samplers import (  # noqa: F401
    Sampler,
    build_samplers,
    model_key,
    model_label,
)
from forgekit.models import SamplingParams


def as_params(value: SamplingParams | Mapping[str, Any] | None, **defaults: Any) -> SamplingParams:
    """Defaults overlaid with the caller's sampling parameters (the runner's one way)."""
    data = value.to_dict() if isinstance(value, SamplingParams) else dict(value or {})
    merged = {**defaults, **{k: v for k, v in data.items() if v is not None}}
    return SamplingParams.coerce(merged)


def input_records(data: Any) -> list[dict[str, Any]]:
    from forgekit.data.io import read_records

    if data is None:
        raise ConfigError("no input data: pass a DataFrame, a list of dicts or a JSONL path")
    records = read_records(data)
    if not records:
        raise ConfigError("the input holds no records")
    return records
