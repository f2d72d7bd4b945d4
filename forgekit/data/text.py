"""Facts about plain text that several layers need: which script it is written in (CJK or
space-delimited), how long it is in words, and where a model's `<think>` block is.

Methods (magpie, self_instruct, reasoning), evaluation (MinHash shingles, ROUGE) and the data
merger all use these; they live here, in the lowest layer, so there is one definition each.
"""

from __future__ import annotations

import re

# CJK Unified Ideographs (+ Ext A, compatibility), Hiragana, Katakana, Hangul, Ext B+.
CJK_RANGES = (
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x3040, 0x30FF),
    (0xAC00, 0xD7AF),
    (0x20000, 0x2FA1F),
)
CJK_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES)
CJK_RE = re.compile(f"[{CJK_CLASS}]")
_CJK_RUN_RE = re.compile(f"[{CJK_CLASS}]+")
_SPACE_PUNCT_RE = re.compile(r"[\W_]+")

# A text whose letters are at least this share CJK is treated as CJK (per character).
CJK_FRACTION = 0.3


def is_cjk_char(ch: str) -> bool:
    return bool(CJK_RE.match(ch))


def cjk_fraction(text: str) -> float:
    """Share of CJK characters among the letters/digits of `text` (0.0 for empty text)."""
    # Regex substitutions run in C; a Python loop over characters costs more than hashing.
    letters = _SPACE_PUNCT_RE.sub("", text)
    if not letters:
        return 0.0
    return (len(letters) - len(_CJK_RUN_RE.sub("", letters))) / len(letters)


def is_cjk(text: str) -> bool:
    """Mostly CJK: at least CJK_FRACTION of its letters and digits."""
    if text.isascii() or not CJK_RE.search(text):  # the common case: no CJK at all
        return False
    return cjk_fraction(text) >= CJK_FRACTION


def detect_script(text: str) -> str:
    """A coarse script check, enough to drop text in the wrong script: 'zh' (mostly CJK),
    'en' (over 90 % Latin letters, accented ones included), else 'other'."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "other"
    if is_cjk(text):
        return "zh"
    latin = sum(1 for c in letters if c.isascii() or "\u00c0" <= c <= "\u024f")
    return "en" if latin / len(letters) > 0.9 else "other"


def length_units(text: str) -> float:
    """Length in words: space-delimited words, plus half a word per CJK character (a Chinese
    word is about two characters), so one limit works for English, Chinese and a mix."""
    cjk = len(CJK_RE.findall(text))
    latin = len(CJK_RE.sub(" ", text).split())
    return latin + cjk / 2


# --- think tags ------------------------------------------------------------------------------
_OPEN = re.compile(r"<think>", re.IGNORECASE)
_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def split_thinking(text: str) -> tuple[str | None, str, str]:
    """(thinking, answer, how) from a thinking model's output.

    `how` is 'closed' (<think>...</think>), 'unclosed' (cut off while thinking: all of it is
    thinking, the answer is empty), 'no_open_tag' (the chat template opened the block, only
    </think> is in the text) or 'none' (no tags: thinking is None, the text is the answer).
    Text before <think> stays in the answer, so nothing the model wrote is lost.
    """
    text = text or ""
    start = _OPEN.search(text)
    end = _CLOSE.search(text, start.end() if start else 0)
    if start and not end:
        return text[start.end() :].strip(), text[: start.start()].strip(), "unclosed"
    if start and end:
        answer = (text[: start.start()] + text[end.end() :]).strip()
        return text[start.end() : end.start()].strip(), answer, "closed"
    if end:
        return text[: end.start()].strip(), text[end.end() :].strip(), "no_open_tag"
    return None, text.strip(), "none"
