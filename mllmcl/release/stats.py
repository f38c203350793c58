"""The statistics a gate decision rests on: a 95% interval for an accuracy measured on n questions (Wilson), and an
exact one-sided McNemar test of "the candidate is worse than production on the same questions", so that a prior
task fails on a real drop and not on the noise of 60-200 questions (the standard error at n=200 is ~3 points)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of an accuracy (Wilson score: sensible at 0, 1 and small n)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Paired:
    """Production vs candidate on the same questions: how many each got right that the other got wrong."""

    n: int  # questions answered by both
    lost: int  # production right, candidate wrong
    gained: int  # production wrong, candidate right
    p_value: float  # one-sided exact McNemar: P(>= lost of the lost+gained discordant pairs | no real change)


def paired_test(production: dict[str, bool], candidate: dict[str, bool]) -> Paired:
    """Exact one-sided McNemar test over the questions both answered (keyed by question id)."""
    common = production.keys() & candidate.keys()
    lost = sum(production[q] and not candidate[q] for q in common)
    gained = sum(candidate[q] and not production[q] for q in common)
    discordant = lost + gained
    if discordant == 0:
        return Paired(len(common), 0, 0, 1.0)
    tail = sum(math.comb(discordant, k) for k in range(lost, discordant + 1))
    return Paired(len(common), lost, gained, min(1.0, tail / 2**discordant))
