"""The statistics a gate decision rests on: a 95% interval for an accuracy measured on n questions (Wilson), the
paired counts of answers lost and gained on the same questions (with the exact McNemar p of a loss), and the rule a prior
task must pass: a one-sided NON-INFERIORITY test, in which the candidate has to show, at alpha, that it lost less
than the allowed drop (Tango's score test on the paired answers; on unpaired accuracies, Newcombe's hybrid score
bound). The burden of proof is on the candidate: a small sample cannot wave a real drop through."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


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


@dataclass(frozen=True)
class NonInferiority:
    """The prior-task rule's outcome: the one-sided p of "the candidate lost at least `margin`" (pass when < alpha),
    the upper bound of the drop at 1 - alpha, and the test's power at this n against a candidate with no real drop."""

    p_value: float
    drop_upper: float
    power: float
    method: str


def _tango_sd(n: int, lost: int | float, gained: int | float, margin: float) -> float:
    """Null standard deviation of (lost - gained) in Tango's score test of H0: drop = margin (Stat Med 1998), from the
    constrained maximum-likelihood estimate of the "gained" cell."""
    a = 2 * n
    b = -lost - gained + (2 * n - lost + gained) * margin
    c = -gained * margin * (1 - margin)
    p21 = (math.sqrt(max(0.0, b * b - 4 * a * c)) - b) / (2 * a)
    return math.sqrt(max(0.0, n * (2 * p21 + margin * (1 - margin))))


def _tango_p(n: int, lost: int, gained: int, margin: float) -> float:
    """One-sided p of H0 "drop >= margin" (small when the candidate shows it lost less)."""
    sd = _tango_sd(n, lost, gained, margin)
    if sd == 0:
        return 0.0 if lost - gained < n * margin else 1.0
    return _NORMAL.cdf((lost - gained - n * margin) / sd)


def paired_noninferiority(paired: Paired, margin: float, alpha: float) -> NonInferiority:
    """Non-inferiority on the same questions: Tango's score test of H0 "drop >= margin". The drop's upper bound is
    the smallest margin the test rejects at alpha; the power is against a candidate with no real drop that disagrees
    with production as often as this one did."""
    n, lost, gained = paired.n, paired.lost, paired.gained
    if n <= 0:
        return NonInferiority(1.0, 1.0, 0.0, "paired (no common questions)")
    lo, hi = (lost - gained) / n, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _tango_p(n, lost, gained, mid) < alpha else (mid, hi)
    discordant = lost + gained
    reject_below = n * margin + _NORMAL.inv_cdf(alpha) * _tango_sd(n, discordant / 2, discordant / 2, margin)
    if discordant == 0:
        power = 1.0 if reject_below > 0 else 0.0
    else:  # with no real drop, lost - gained ~ N(0, discordant)
        power = _NORMAL.cdf(reject_below / math.sqrt(discordant))
    return NonInferiority(_tango_p(n, lost, gained, margin), hi, power, "Tango score test, paired")


def unpaired_noninferiority(
    before: float, n_before: int, after: float, n_after: int, margin: float, alpha: float
) -> NonInferiority:
    """Non-inferiority from two accuracies on (possibly) other questions: the one-sided upper bound of the drop by
    Newcombe's hybrid score method (Wilson bounds at 1 - alpha); pass when it is below `margin`."""
    if n_before <= 0 or n_after <= 0:
        return NonInferiority(1.0, 1.0, 0.0, "unpaired (no sample size)")
    z = _NORMAL.inv_cdf(1 - alpha)
    upper_before = wilson(round(before * n_before), n_before, z)[1]
    lower_after = wilson(round(after * n_after), n_after, z)[0]
    drop = before - after
    upper = drop + math.sqrt((upper_before - before) ** 2 + (after - lower_after) ** 2)
    se = max(1e-12, (upper - drop) / z)
    p = 1 - _NORMAL.cdf((margin - drop) / se)
    power = _NORMAL.cdf(margin / se - z)
    return NonInferiority(p, min(1.0, upper), power, "Newcombe hybrid score, unpaired")
