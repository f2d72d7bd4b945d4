"""Facts about plain text that several layers need: which script it is written in (CJK or
space-delimited), how long it is in words, English stop words, where a model's `<think>`
block is, how to cut it (truncation at a boundary, paragraph-aware chunks with offsets) and
where a quote is in it.

Methods (magpie, self_instruct, reasoning), evaluation (MinHash shingles, ROUGE) and the data
merger all use these; they live here, in the lowest layer, so there is one definition each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from forgekit.errors import ConfigError

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

# English words that carry no content: a text made only of these says nothing.
_STOP_WORDS_TEXT = (
    "a an the and or but if then so of to in on at by for with from as is are was were "
    "be been being am do does did done have has had it its this that these those there "
    "here i me my we our you your he him his she her they them their what which who whom "
    "whose why how when where not no yes ok okay all any some such only just very too "
    "also than can could will would shall should may might must about into over under "
    "again out up down off oh ah um uh well hmm "
)
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

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


def find_quote(text: str, quote: str, offset: int = 0) -> tuple[int, int] | None:
    """(start, end) of `quote` in `text`, found verbatim but for case and runs of whitespace,
    shifted by `offset` (where `text` starts in a larger document); None when absent."""
    if not quote.strip():
        return None
    pattern = r"\s+".join(re.escape(word) for word in quote.split())
    match = re.search(pattern, text, re.IGNORECASE)
    return None if match is None else (offset + match.start(), offset + match.end())
