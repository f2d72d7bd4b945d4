"""Turning records into the text that dedup and diversity measure, and text into tokens.

Two tokenizations matter here:

* space-delimited text (English, most European languages) is split into lowercase word tokens;
* CJK text (Chinese, Japanese, Korean) has no spaces between words, so it is split into
  characters. Shingles/n-grams are then built over words or characters respectively.

`script="auto"` decides per document: a document whose letters are at least 30 % CJK characters
is treated as CJK. Mixed documents therefore get one consistent treatment each.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from forgekit.data.text import CJK_CLASS as _CJK_CLASS
from forgekit.data.text import (  # noqa: F401 - the script helpers, re-exported for evaluate
    CJK_FRACTION,
    cjk_fraction,
    is_cjk,
    is_cjk_char,
)
from forgekit.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

# A word token: a run of letters/digits that are not CJK, or a single CJK character.
_WORD_RE = re.compile(f"[{_CJK_CLASS}]|[^\\W{_CJK_CLASS}]+")
_SPACE_PUNCT_RE = re.compile(r"[\W_]+")

_NONWORD_BYTES = bytes(c for c in range(128) if not (chr(c).isalnum() or chr(c) == "_"))
_ASCII_NONWORD = bytes.maketrans(_NONWORD_BYTES, b" " * len(_NONWORD_BYTES))

SCRIPTS = ("auto", "words", "chars")


def normalize(text: str) -> str:
    """NFKC + lowercase + collapsed whitespace: the form exact dedup compares."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Lowercase word tokens; punctuation dropped. CJK characters come out one per token."""
    if text.isascii():
        # Same tokens as the regex on ASCII text (\w = [A-Za-z0-9_]), 3x faster: this is the
        # hot path of MinHash on English data.
        return text.lower().encode("ascii").translate(_ASCII_NONWORD).decode("ascii").split()
    return _WORD_RE.findall(unicodedata.normalize("NFKC", text).lower())


def chars(text: str) -> list[str]:
    """Characters of the normalized text without whitespace and punctuation."""
    return list(char_string(text))


def char_string(text: str) -> str:
    """`"".join(chars(text))`, without a str per character (MinHash's CJK hot path)."""
    return _SPACE_PUNCT_RE.sub("", unicodedata.normalize("NFKC", text).lower())


def check_script(script: str) -> str:
    if script not in SCRIPTS:
        raise ConfigError(f"script={script!r}: choose one of {', '.join(SCRIPTS)}")
    return script


def tokens(text: str, script: str = "auto") -> list[str]:
    """Word tokens for space-delimited text, characters for CJK (see module doc)."""
    if script == "auto":
        script = "chars" if is_cjk(text) else "words"
    return chars(text) if script == "chars" else words(text)


def ngrams(items: Sequence[str], n: int, sep: str = " ") -> list[str]:
    """Contiguous n-grams joined by `sep`. A text shorter than n yields one shingle (itself),
    so two identical short texts still compare equal instead of both being empty."""
    if not items:
        return []
    if len(items) < n:
        return [sep.join(items)]
    return list(map(sep.join, zip(*(items[i:] for i in range(n)))))


# --- getting text out of records ------------------------------------------------------------


def text_fields(text: str | Sequence[str]) -> list[str]:
    """`"input"`, `"input+output"` or `["input", "output"]` -> list of field names."""
    if isinstance(text, str):
        fields = [part.strip() for part in text.split("+")]
    else:
        fields = [str(part) for part in text]
    if not fields or any(not f for f in fields):
        raise ConfigError(f"text={text!r}: name one field, or several joined with '+'")
    return fields


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        # history-like lists of turns, or chosen/rejected conversations
        return "\n".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return _as_text(value.get("content", value.get("text", "")))
    if hasattr(value, "tolist"):
        return _as_text(value.tolist())
    return str(value)


def column_texts(df: pd.DataFrame, text: str | Sequence[str] = "input") -> list[str]:
    """The text of each row: one field, or several joined with a newline."""
    fields = text_fields(text)
    missing = [f for f in fields if f not in df.columns]
    if missing:
        available = ", ".join(map(str, df.columns)) or "(none)"
        raise ConfigError(
            f"text field {missing[0]!r} is not in the data; available fields: {available}"
        )
    columns = [df[f].tolist() for f in fields]
    if len(columns) == 1:
        return [_as_text(v) for v in columns[0]]
    return ["\n".join(_as_text(v) for v in row) for row in zip(*columns)]
