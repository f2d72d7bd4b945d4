"""Helpers shared by the methods of issue 4 (self_instruct, cosmopedia, reasoning, doc_qa,
translate/rewrite, judge): parsing what models write (numbered lists, `Label: value`
blocks), cutting text (truncation at a boundary, paragraph-aware chunks with offsets), the
per-record run plumbing (COMPAT, issue 12: the runner's job once these methods are
declared) and, re-exported, their command-line helpers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from forgekit.cli.legacy import (  # noqa: F401 - COMPAT (issue 12): re-exported CLI helpers
    add_sampling_options,
    call_options,
    split_list,
)
from forgekit.data.records import fingerprint, record_id
from forgekit.engine import RunConfig, RunContext, Task
from forgekit.errors import ConfigError
from forgekit.methods._common import result_frame, run_method
from forgekit.models import SamplingParams

# --- numbered lists ------------------------------------------------------------------------
# A list marker: optional markdown (**, #, >), an optional word ("Task 1:", "任务1："), then a
# number in any Unicode digits (full-width １ too) followed by . ． 、 ) ） : ： or wrapped in
# parentheses "(1)" / "（1）". "1.5 kg" is not a marker: a dot must not be followed by a digit.
_MARKER = re.compile(
    r"""^\s*(?:[*_#>]+\s*)?
    (?:(?:task|instruction|question|item|example|prompt|任务|指令|问题|题目)\s*[#＃]?\s*)?
    (?:[(（]\s*(?P<p>\d{1,3})\s*[)）]|(?P<n>\d{1,3})\s*(?:[.．](?!\d)|[、)）:：]))
    (?:[*_]+)?\s*(?:[:：]\s*)?(?:[*_]{2}\s*)?
    (?P<text>.*)$""",
    re.IGNORECASE | re.VERBOSE,
)
_BULLET = re.compile(r"^\s*[-*•·]\s+(?P<text>\S.*)$")


def _strip_markdown(text: str) -> str:
    text = text.strip()
    # "**Write a haiku**" -> "Write a haiku"; a lone trailing "**" left by "1. **Task:** x"
    text = re.sub(r"^\*\*(.+?)\*\*$", r"\1", text)
    return text.strip().strip("*").strip()


def parse_numbered_list(text: str, *, join: str = " ", bullets: bool = True) -> list[str]:
    """The items of a numbered list in a model's answer.

    Accepts `1.`, `1)`, `1、`, `(1)`, `（1）`, `Task 1:`, full-width digits and markdown bold;
    an item may run over several lines (continuation lines are joined with `join`). Text
    before the first item is a preamble and dropped; after a blank line, an unindented line
    that is not the next item ends the list (trailing commentary). Numbers must follow on
    from the previous item (so "2020. was a year" inside an item does not start a new one);
    the first item may start at any number (models continue the numbering of examples).
    Without any numbered item, `-`/`*` bullets are used when `bullets` is on.
    """
    items: list[list[str]] = []
    last_number: int | None = None
    blank_before = False
    ended = False
    for line in text.splitlines():
        if not line.strip():
            blank_before = True
            continue
        match = _MARKER.match(line)
        number = None
        if match:
            number = int(match.group("p") or match.group("n"))
        if match and (last_number is None or number == last_number + 1):
            items.append([match.group("text")])
            last_number = number
            ended = False
        elif items and not ended:
            if blank_before and not line[:1].isspace():
                ended = True  # commentary after the list
            else:
                items[-1].append(line.strip())
        blank_before = False
    found = [_strip_markdown(join.join(p.strip() for p in parts if p.strip())) for parts in items]
    if not items and bullets:
        found = [
            _strip_markdown(m.group("text")) for m in map(_BULLET.match, text.splitlines()) if m
        ]
    return [item for item in found if item]


# --- "Label: value" blocks -----------------------------------------------------------------


def parse_labeled(text: str, labels: dict[str, Sequence[str]]) -> dict[str, str]:
    """Values of `Label: value` lines. `labels` maps a field name to the label spellings that
    introduce it (matched case-insensitively at a line start, with `:` or `：`, markdown
    bold allowed). A value runs until the next known label; fields not found are absent."""
    spellings = {}
    for name, aliases in labels.items():
        for alias in aliases:
            spellings[alias.lower()] = name
    alternatives = "|".join(sorted(map(re.escape, spellings), key=len, reverse=True))
    pattern = re.compile(
        rf"^[ \t]*(?:[*_#>]+[ \t]*)?(?P<label>{alternatives})[ \t]*(?:[*_]+)?[ \t]*[:：]"
        rf"(?:[ \t]*[*_]{{2}})?",
        re.IGNORECASE | re.MULTILINE,
    )
    found: dict[str, str] = {}
    matches = list(pattern.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = spellings[match.group("label").lower()]
        value = text[match.end() : end].strip()
        found.setdefault(name, value)  # the first occurrence wins: later ones are echoes
    return found


def strip_quotes(text: str) -> str:
    text = text.strip()
    pairs = {'"': '"', "'": "'", "“": "”", "「": "」", "«": "»"}
    if len(text) >= 2 and pairs.get(text[0]) == text[-1]:
        return text[1:-1].strip()
    return text


# --- cutting text --------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?:[.!?]+[\"'”’)\]]*(?=\s|$)|[。！？!?；;]+[”’」』)]*)")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")


def truncate_text(text: str, max_chars: int) -> str:
    """At most `max_chars` characters, cut at the last sentence end if that keeps at least
    half, else at the last whitespace, else hard (CJK text has no spaces)."""
    text = text.strip()
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= max_chars // 2:
        return head[: ends[-1]].strip()
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= max_chars // 2:
        return head[:space].strip()
    return head.strip()


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: `text == document[start:end]`."""

    index: int
    start: int
    end: int
    text: str


def _units(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, starts_paragraph) spans of sentences, in order, covering the text's
    non-blank content; a sentence longer than any chunk is split later by words."""
    spans = []
    para_starts = [0] + [m.end() for m in _PARAGRAPH.finditer(text)]
    para_ends = [m.start() for m in _PARAGRAPH.finditer(text)] + [len(text)]
    for p_start, p_end in zip(para_starts, para_ends):
        pos = p_start
        first = True
        boundaries = [m.end() for m in _SENTENCE_END.finditer(text, p_start, p_end)]
        for end in [*boundaries, p_end]:
            piece = text[pos:end]
            if piece.strip():
                lead = len(piece) - len(piece.lstrip())
                tail = len(piece.rstrip())
                spans.append((pos + lead, pos + tail, first))
                first = False
            pos = end
    return spans


def _split_long(text: str, start: int, end: int, size: int, measure) -> list[tuple[int, int]]:
    """Split one over-long sentence at whitespace (or hard, for text without spaces)."""
    out = []
    pos = start
    while pos < end:
        stop = end
        if measure(text[pos:end]) > size:
            words = [m.end() for m in re.finditer(r"\S+", text[pos:end])]
            stop = pos + (size if measure is len else 0)
            fitting = [w for w in words if measure(text[pos : pos + w]) <= size]
            if fitting:
                stop = pos + fitting[-1]
            elif measure is not len:
                stop = pos + words[0]
            stop = max(stop, pos + 1)
        out.append((pos, stop))
        pos = stop
        while pos < end and text[pos].isspace():
            pos += 1
    return out


def chunk_text(text: str, size: int = 1000, overlap: int = 200, unit: str = "chars") -> list[Chunk]:
    """Paragraph-aware chunks of at most `size` characters (or words, `unit="words"`), each
    starting at a sentence boundary and repeating up to `overlap` of the previous chunk's
    tail. A chunk prefers to end at a paragraph break once it is half full."""
    if size < 1:
        raise ConfigError(f"chunk size must be >= 1, got {size}")
    if not 0 <= overlap < size:
        raise ConfigError(f"chunk overlap must be in [0, size), got {overlap} (size {size})")
    if unit not in ("chars", "words"):
        raise ConfigError(f"chunk unit {unit!r}: use 'chars' or 'words'")
    measure: Callable[[str], int] = len if unit == "chars" else (lambda s: len(s.split()))
    units: list[tuple[int, int, bool]] = []
    for start, end, para in _units(text):
        if measure(text[start:end]) > size:
            pieces = _split_long(text, start, end, size, measure)
            units += [(s, e, para and i == 0) for i, (s, e) in enumerate(pieces)]
        else:
            units.append((start, end, para))
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        start = units[i][0]
        j = i
        while j + 1 < len(units) and measure(text[start : units[j + 1][1]]) <= size:
            nxt = units[j + 1]
            if nxt[2] and measure(text[start : units[j][1]]) >= size // 2:
                # A new paragraph that would not be complete in this chunk: stop here.
                para_end = next(
                    (u[1] for k, u in enumerate(units[j + 2 :], j + 2) if units[k][2]), None
                )
                if para_end is None or measure(text[start:para_end]) > size:
                    break
            j += 1
        end = units[j][1]
        chunks.append(Chunk(len(chunks), start, end, text[start:end]))
        if j + 1 >= len(units):
            break
        # Next chunk: the earliest unit after i whose start keeps the overlap within budget.
        k = j + 1
        while k - 1 > i and measure(text[units[k - 1][0] : end]) <= overlap:
            k -= 1
        i = k
    return chunks


# --- per-record runs -----------------------------------------------------------------------


def record_key(record: dict[str, Any]) -> str:
    """What identifies an input record for resume: its content, without run bookkeeping."""
    return fingerprint({k: v for k, v in record.items() if k not in ("lineage",)}, 16)


def map_records(
    method: str,
    items: Sequence[dict[str, Any]],
    produce: Callable[[RunContext, int, dict[str, Any]], Any],
    *,
    job: dict[str, Any],
    model: Any,
    out: Any,
    config: RunConfig,
    limit: int | None = None,
    extra_tasks: Iterable[Task] = (),
) -> Any:
    """Run `produce(ctx, index, item)` once per item through the engine (one record each, or
    None to filter it out), with ids stable across re-runs; `extra_tasks` run after them."""

    def tasks() -> Iterator[Task]:
        for index, item in enumerate(items):
            yield Task(
                id=record_id(method, {"job": job, "item": record_key(item)}, index),
                fn=lambda ctx, i=index, it=item: produce(ctx, i, it),
                info={"index": index},
            )
        yield from extra_tasks

    return run_method(
        tasks=tasks(), method=method, model=model, out=out, config=config, job=job, limit=limit
    )


def sampling(
    defaults: dict[str, Any], params: SamplingParams | dict[str, Any] | None
) -> SamplingParams:
    """Method defaults overridden by what the caller gave."""
    given = params.to_dict() if isinstance(params, SamplingParams) else dict(params or {})
    return SamplingParams.coerce(defaults, **given)


def with_seed(params: SamplingParams, seed: int, index: int, salt: int = 0) -> SamplingParams:
    """A per-request seed derived from the run seed: reproducible, and different per item."""
    return SamplingParams.coerce(params, seed=seed * 1_000_003 + index * 101 + salt)


def frame(result: Any, **details: Any):
    return result_frame(result, **details)


def require_field(records: Sequence[dict[str, Any]], field: str, option: str) -> None:
    """Fail early, naming the record and the option, when a needed field is missing."""
    for index, record in enumerate(records):
        if record.get(field) in (None, ""):
            available = ", ".join(sorted(record)) or "(none)"
            raise ConfigError(
                f"record {index} has no {field!r} field (set {option}); its fields: {available}"
            )
