"""Named entities of a text, for entity diversity.

Chinese: jieba part-of-speech tags for named entities (nr person, ns place, nt organization,
nz other proper noun). English: a capitalization heuristic with no model (below), or spaCy's
`en_core_web_sm` when asked for. Any callable text -> list of entities works as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from forgekit.errors import ConfigError
from forgekit.evaluate.text import is_cjk

# Chinese: jieba part-of-speech tags for named entities.
JIEBA_ENTITY_TAGS = {"nr": "person", "ns": "place", "nt": "organization", "nz": "other proper"}

# English heuristic (no model): a run of capitalized words (joined by "of"/"the"/"and"/"de"),
# or an acronym of 2+ capitals. A single capitalized word is dropped when it starts a sentence
# and is a common word (it is capitalized for position, not because it is a name).
_EN_ENTITY_RE = None
_EN_COMMON = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "if",
        "then",
        "else",
        "for",
        "to",
        "of",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "as",
        "and",
        "or",
        "but",
        "not",
        "no",
        "yes",
        "please",
        "give",
        "write",
        "explain",
        "describe",
        "list",
        "tell",
        "make",
        "create",
        "find",
        "show",
        "help",
        "summarize",
        "translate",
        "compare",
        "calculate",
        "provide",
        "generate",
        "suggest",
        "there",
        "here",
        "some",
        "any",
        "all",
        "each",
        "every",
        "one",
        "two",
        "first",
        "next",
        "also",
        "however",
        "therefore",
        "so",
        "because",
        "after",
        "before",
        "while",
    ]
)


def english_entities(text: str) -> list[str]:
    """Named-entity candidates in English text by capitalization (see the rule above)."""
    import re

    global _EN_ENTITY_RE
    if _EN_ENTITY_RE is None:
        word = r"[A-Z][\w'&.-]*[\w]|[A-Z]"
        _EN_ENTITY_RE = re.compile(
            rf"(?<![\w])(?:{word})(?:\s+(?:(?:of|the|and|de|von|van|la|del)\s+)?(?:{word}))*"
        )
    out = []
    for m in _EN_ENTITY_RE.finditer(text):
        span = m.group(0).strip(".")
        start = m.start()
        before = text[:start].rstrip()
        sentence_start = not before or before[-1] in ".!?:\n\"'“(" or before.endswith("...")
        parts = span.split()
        if sentence_start and parts and parts[0].lower() in _EN_COMMON:
            parts = parts[1:]
            while parts and parts[0].lower() in ("of", "the", "and", "de"):
                parts = parts[1:]
        if not parts:
            continue
        span = " ".join(parts)
        if len(parts) == 1 and span.lower() in _EN_COMMON:
            continue
        if len(parts) == 1 and span.isupper() is False and len(span) < 2:
            continue
        out.append(span)
    return out


def chinese_entities(text: str, tags: Iterable[str] = tuple(JIEBA_ENTITY_TAGS)) -> list[str]:
    """Words jieba tags as person/place/organization/other proper noun (nr, ns, nt, nz)."""
    try:
        import jieba
        import jieba.posseg as pseg
    except ImportError:
        raise ConfigError("Chinese entity extraction needs jieba: pip install jieba") from None
    jieba.setLogLevel(60)
    wanted = set(tags)
    return [w.word for w in pseg.cut(text) if w.flag in wanted and len(w.word.strip()) > 1]


def extract_entities(text: str, extractor: str | Callable[[str], list[str]] = "auto"):
    """Entities of one text: jieba for Chinese, the capitalization heuristic for English."""
    if callable(extractor):
        return list(extractor(text))
    if extractor == "auto":
        extractor = "jieba" if is_cjk(text) else "english"
    if extractor == "jieba":
        return chinese_entities(text)
    if extractor == "english":
        return english_entities(text)
    if extractor == "spacy":
        try:
            import spacy
        except ImportError:
            raise ConfigError("extractor='spacy' needs spaCy and a model installed") from None
        nlp = _spacy_model(spacy)
        return [ent.text for ent in nlp(text).ents]
    raise ConfigError(
        f"extractor={extractor!r}: use 'auto', 'jieba', 'english', 'spacy' or a callable"
    )


_SPACY = None


def _spacy_model(spacy):
    global _SPACY
    if _SPACY is None:
        try:
            _SPACY = spacy.load("en_core_web_sm")
        except OSError:
            raise ConfigError(
                "extractor='spacy': the model en_core_web_sm is not installed"
            ) from None
    return _SPACY
