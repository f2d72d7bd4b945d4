"""Reading what models write, by topic, defined once for every method:

- labels: `normalize_text`, `label_key`, `LabelSet` (exact / one whole word / at the start);
- majority voting with a named tie policy: `majority`;
- ratings ("Rating: 4 / Rationale: ..."): `parse_rating`;
- yes/no answers (English and Chinese): `parse_yes_no`;
- structure: numbered lists (`parse_numbered_list`), `Label: value` blocks
  (`parse_labeled`), quotes around an answer (`strip_quotes`);
- think tags: `split_thinking` (from forgekit.data.text, shared with the data merger);
- reproducible per-item choices: `item_rng`.
"""

from __future__ import annotations

import random
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from forgekit.data.records import fingerprint
from forgekit.data.text import split_thinking  # noqa: F401 - think tags live with the text facts
from forgekit.errors import ConfigError

# --- labels -----------------------------------------------------------------------------
# ASCII punctuation plus the full-width and typographic marks models like to add.
_PUNCT = string.punctuation + "“”‘’«»。，、！？：；（）【】《》…·—–"
_NON_WORD = re.compile(r"[^\w\s]+")
_MARKUP = re.compile(r"[*`<>\[\]\"'“”]")
# After a label at the start of an answer: the end, or a separator before an explanation.
_AFTER_START = r"(?:$|\s*[,;:(]|\s+[-—–]\s)"


def normalize_text(text: str) -> str:
    """Case-folded, NFKC, whitespace collapsed, surrounding punctuation/markdown stripped."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    text = " ".join(text.split())
    return text.strip(_PUNCT + " ")


def label_key(text: str) -> str:
    """How labels and free-form short answers compare: normalized, inner punctuation gone."""
    return " ".join(_NON_WORD.sub(" ", normalize_text(text)).split())


def _start_form(text: str) -> str:
    """The first line, normalized, markup removed, '_' as a space (for match='start')."""
    line = next((line for line in (text or "").splitlines() if line.strip()), "")
    return normalize_text(_MARKUP.sub("", line).replace("_", " "))


MATCH_MODES = ("exact", "word", "start")


class LabelSet:
    """Turns a model's answer into a label, or None when it is not a valid one.

    `labels`: the allowed labels (a list), or a dict label -> aliases; `aliases`: more
    alias -> label pairs. Matching is on normalized text (case, whitespace, punctuation):
    - "exact": the whole answer is a label or alias;
    - "word" (default): an exact answer wins; otherwise exactly one label (or alias) occurs
      in the answer as a whole word ("The sentiment is Positive." -> "positive");
    - "start": the answer's first line opens with a label, alone or followed by a separator
      and an explanation ("Hard - needs a proof" -> "hard"; "medium-hard" is no label).
    Longer labels are tried first, so "very hard" is never read as "hard".
    Without labels every non-empty answer is valid and answers compare by `label_key`.
    """

    def __init__(
        self,
        labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        aliases: Mapping[str, str] | None = None,
        match: str = "word",
    ) -> None:
        if match not in MATCH_MODES:
            raise ConfigError(f"match must be one of {', '.join(MATCH_MODES)}, got {match!r}")
        self.match = match
        self.labels: list[str] = []
        self._lookup: dict[str, str] = {}
        if isinstance(labels, Mapping):
            pairs = [(label, [label, *(labels[label] or [])]) for label in labels]
        else:
            pairs = [(label, [label]) for label in (labels or [])]
        names: list[tuple[str, str]] = []
        for label, spellings in pairs:
            self.labels.append(str(label))
            names += [(str(name), str(label)) for name in spellings]
        for alias, label in (aliases or {}).items():
            if self.labels and str(label) not in self.labels:
                raise ConfigError(
                    f"alias {alias!r} points to {label!r}, which is not one of the labels "
                    f"({', '.join(self.labels)})"
                )
            names.append((str(alias), str(label)))
        for name, label in names:
            self._add(name, label)
        by_length = sorted(self._lookup.items(), key=lambda kv: -len(kv[0]))
        self._patterns = [
            (re.compile(rf"(?<!\w){re.escape(key)}(?!\w)"), label) for key, label in by_length
        ]
        starts = sorted({(_start_form(n), lab) for n, lab in names}, key=lambda kv: -len(kv[0]))
        self._starts = [(re.compile(re.escape(s) + _AFTER_START), lab) for s, lab in starts if s]

    def _add(self, name: str, label: str) -> None:
        key = label_key(name)
        if not key:
            raise ConfigError(f"label or alias {name!r} is empty after normalization")
        previous = self._lookup.get(key)
        if previous is not None and previous != label:
            raise ConfigError(f"{name!r} would mean both {previous!r} and {label!r}")
        self._lookup[key] = label

    @property
    def closed(self) -> bool:
        return bool(self._lookup)

    def parse(self, text: str | None) -> str | None:
        if self.closed and self.match == "start":
            form = _start_form(text or "")
            return next((label for pattern, label in self._starts if pattern.match(form)), None)
        key = label_key(text or "")
        if not key:
            return None
        if not self.closed:
            return key
        if key in self._lookup:
            return self._lookup[key]
        if self.match == "exact":
            return None
        found: set[str] = set()
        rest = key
        for pattern, label in self._patterns:
            if pattern.search(rest):
                found.add(label)
                rest = pattern.sub(" ", rest)  # "very hard" must not also count as "hard"
        return found.pop() if len(found) == 1 else None


def parse_aliases(pairs: Sequence[str] | None) -> dict[str, str]:
    """`pos=positive` pairs (the command line's --alias) as a dict."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        alias, sep, label = pair.partition("=")
        if not sep or not alias.strip() or not label.strip():
            raise ConfigError(f"--alias {pair!r}: expected ALIAS=LABEL")
        out[alias.strip()] = label.strip()
    return out


# --- majority voting -----------------------------------------------------------------------
TIE_POLICIES = ("none", "first", "random", "prefer:<voter>")


def check_tie_policy(tie: str, voters: Sequence[str]) -> None:
    if tie in ("none", "first", "random"):
        return
    if tie.startswith("prefer:"):
        voter = tie[len("prefer:") :]
        if voter not in voters:
            raise ConfigError(f"tie={tie!r}: no voter named {voter!r}; voters: {', '.join(voters)}")
        return
    raise ConfigError(f"tie must be one of {', '.join(TIE_POLICIES)}, got {tie!r}")


def majority(
    votes: Sequence[dict[str, Any]], tie: str, rng_seed: Any = None
) -> tuple[str | None, dict[str, Any]]:
    """The winning label of `votes` (dicts with 'voter' and 'label'; label None = invalid)
    and the tally: counts, whether there was a tie, which labels tied, the agreement ratio
    (votes for the top label / all votes, invalid ones included) and what decided.

    Tie policies: "none" (no winner), "first" (the tied label given first), "random" (a
    reproducible pick seeded by `rng_seed`), "prefer:<voter>" (that voter's label, if tied).
    """
    counts = Counter(v["label"] for v in votes if v["label"] is not None)
    tally: dict[str, Any] = {
        "counts": dict(counts),
        "valid": sum(counts.values()),
        "invalid": sum(1 for v in votes if v["label"] is None),
        "tie": False,
        "tied": [],
    }
    if not counts:
        tally["agreement"] = 0.0
        tally["decided_by"] = "no valid votes"
        return None, tally
    top = max(counts.values())
    tally["agreement"] = round(top / len(votes), 4)
    # Tied labels in the order voters first gave them: "first" picks the earliest.
    tied = list(dict.fromkeys(v["label"] for v in votes if counts.get(v["label"]) == top))
    if len(tied) == 1:
        tally["decided_by"] = "majority"
        return tied[0], tally
    tally.update(tie=True, tied=tied)
    if tie == "first":
        winner: str | None = tied[0]
    elif tie == "random":
        winner = item_rng(0, rng_seed, tied).choice(tied)
    elif tie.startswith("prefer:"):
        preferred = tie[len("prefer:") :]
        choice = next((v["label"] for v in votes if v["voter"] == preferred), None)
        winner = choice if choice in tied else None
    else:
        winner = None
    tally["decided_by"] = f"tie: {tie}" if winner is not None else f"tie: {tie} (no winner)"
    return winner, tally


def item_rng(seed: int, *parts: Any) -> random.Random:
    """A random generator that depends only on the seed and the item: resumable choices."""
    return random.Random(int(fingerprint([seed, *parts], 16), 16))


# --- ratings -------------------------------------------------------------------------------
_NUMBER = r"(\d+(?:\.\d+)?)"
_RATING = re.compile(
    r"(?:rating|score)\W{0,4}?"
    + _NUMBER
    + r"(?!\s*[-–]\s*\d)"  # "Rating (1-5): ..." names the scale, not a rating
    + r"(?:\s*(?:/|out\s+of)\s*"
    + _NUMBER
    + r")?",
    re.IGNORECASE,
)
_BARE = re.compile(r"^\W*" + _NUMBER + r"(?:\s*(?:/|out\s+of)\s*" + _NUMBER + r")?\W*$")
_RATIONALE = re.compile(r"rationale\W{0,4}?[:：]\s*\**\s*(.*)", re.IGNORECASE | re.DOTALL)


def parse_rating(text: str, scale: int) -> tuple[float | None, str | None, str | None]:
    """(rating, rationale, problem). Accepts "Rating: 4", "**Rating:** 4/5", "Score - 4 out
    of 5", or a reply that is just "4". A rating on another scale ("8/10" when the scale is
    5) or outside 1..scale is unparsable rather than guessed."""
    text = text or ""
    match = _RATING.search(text) or _BARE.match(text.strip())
    rationale_match = _RATIONALE.search(text)
    rationale = rationale_match.group(1).strip() if rationale_match else None
    if match is None:
        return None, rationale, "no 'Rating: N' in the judge's reply"
    rating = float(match.group(1))
    if match.group(2) is not None and float(match.group(2)) != scale:
        return None, rationale, f"rating {match.group(0).strip()!r} is not on the 1-{scale} scale"
    if not 1 <= rating <= scale:
        return None, rationale, f"rating {rating:g} is outside 1-{scale}"
    if rationale is None:
        rest = (text[: match.start()] + text[match.end() :]).strip(" \n*:-")
        rationale = rest or None
    return rating, rationale, None


# --- yes / no ------------------------------------------------------------------------------
def parse_yes_no(text: str) -> bool | None:
    """True for yes/true/是/对, False for no/false/not/否/不, None when neither opens it."""
    head = (text or "").strip().lstrip("*：: ").lower()
    if re.match(r"(yes|true|是(?!否)|对)\b", head) or head.startswith("是"):
        return True
    if re.match(r"(no|false|not)\b", head) or head.startswith(("否", "不是", "不")):
        return False
    return None


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
