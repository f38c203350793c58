"""Answer matching as in the MLLM-CL protocol: exact match after normalisation, else containment of the
gold answer when it is the only legal choice the prediction names, else the letter of a choice."""

from __future__ import annotations

import re
import string

_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = str.maketrans({c: " " for c in string.punctuation if c not in "+-"})


def normalize(text: str) -> str:
    """Lower-case, drop punctuation but + and -, drop articles (unless nothing else is left) and write number words as
    digits."""
    words = str(text).lower().translate(_PUNCT).split()
    kept = [w for w in words if w not in _ARTICLES] or words  # "a" alone is an answer (a button, a letter)
    return " ".join(_NUMBER_WORDS.get(w, w) for w in kept)


def _contains(haystack: str, needle: str) -> bool:
    return re.search(rf"(^| ){re.escape(needle)}( |$)", haystack) is not None


def is_correct(prediction: str, answer: str, choices: list[str] | None = None) -> bool:
    """Equal after normalisation; else, with choices, the gold one is the only choice named or its letter is given; else
    the gold answer appears as whole words. Empty is wrong."""
    pred, gold = normalize(prediction), normalize(answer)
    if not pred:
        return False
    if pred == gold:
        return True
    if choices:
        named = [c for c in {normalize(c) for c in choices} if _contains(pred, c)]
        if named == [gold]:
            return True
        letters = string.ascii_lowercase[: len(choices)]
        return pred in letters and normalize(choices[letters.index(pred)]) == gold
    return _contains(pred, gold)


def accuracy(flags: list[bool]) -> float:
    """Share of True flags, rounded to 4 places; 0.0 for no flags."""
    return round(sum(flags) / len(flags), 4) if flags else 0.0
