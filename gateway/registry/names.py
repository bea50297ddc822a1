"""Why: a prompt that names an enrolled person needs that person's consent just like their face does.

Names and aliases are folded (Unicode compatibility decomposition, accents dropped, case-folded, a few
letters that do not decompose mapped by hand) and matched as whole word sequences, so "Zoë" matches "zoe"
and "Ann" does not match "Anne". The matched text is returned as it appears in the prompt.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_WORD = re.compile(r"\w+")
_EXTRA = str.maketrans(
    {
        "ø": "o",
        "Ø": "o",
        "ł": "l",
        "Ł": "l",
        "đ": "d",
        "Đ": "d",
        "æ": "ae",
        "Æ": "ae",
        "œ": "oe",
        "Œ": "oe",
        "ı": "i",
        "þ": "th",
        "Þ": "th",
        "ð": "d",
        "Ð": "d",
    }
)


def fold(text: str) -> str:
    """Case- and accent-insensitive form of `text`."""
    if text.isascii():  # nothing to decompose or map: the fast path for long prompts
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text.translate(_EXTRA))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()


def tokens(text: str) -> list[tuple[str, int, int]]:
    """Folded words of `text` with their (start, end) offsets in the NFC form of `text`."""
    out: list[tuple[str, int, int]] = []
    for m in _WORD.finditer(unicodedata.normalize("NFC", text)):
        # a folded word may itself split (e.g. a ligature); keep its parts together as one token run
        for part in _WORD.findall(fold(m.group())):
            out.append((part, m.start(), m.end()))
    return out


class NameIndex:
    """Maps folded name word sequences to subject ids; immutable once built (rebuild on change)."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        """`entries`: (subject_id, name) pairs — display names and aliases alike."""
        self._by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for subject_id, name in entries:
            words = tuple(t for t, _, _ in tokens(name))
            if not words:
                continue
            self._by_first.setdefault(words[0], []).append((words, subject_id))
        for cands in self._by_first.values():
            cands.sort(key=lambda c: -len(c[0]))  # longest name first

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_first.values())

    def match(self, prompt: str) -> list[tuple[str, str]]:
        """(subject_id, matched text as written in the prompt), in prompt order. A subject's match inside
        a longer match of the same subject ("Nadia" inside "Nadia Ødegård") is not reported again."""
        nfc = unicodedata.normalize("NFC", prompt)
        toks = tokens(nfc)
        words = [t for t, _, _ in toks]
        spans: list[tuple[str, int, int]] = []  # (subject, first token, last token + 1)
        for i, w in enumerate(words):
            for name_words, subject_id in self._by_first.get(w, ()):
                n = len(name_words)
                if tuple(words[i : i + n]) == name_words:
                    spans.append((subject_id, i, i + n))
        out: list[tuple[str, str]] = []
        for sid, a, b in spans:
            inside = any(s == sid and x <= a and b <= y and (x, y) != (a, b) for s, x, y in spans)
            hit = (sid, nfc[toks[a][1] : toks[b - 1][2]])
            if not inside and hit not in out:
                out.append(hit)
        return out
