"""The benchmark's contracts: an Item is one generated question, a Generator makes Items of one task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Item:
    """One generated question: image (None: text-only), question, answer, answer type, legal choices, question type, and
    how it was rendered."""

    image: "object | None"  # PIL RGB image (image_size x image_size) or None for text-only
    question: str
    answer: str
    answer_type: str  # mllmcl.data.records.ANSWER_TYPES
    choices: list[str] | None
    question_type: str
    render: dict = field(default_factory=dict)  # how it was drawn (the ability track's shift is visible here)


@dataclass(frozen=True)
class Generator:
    """One task of the benchmark: name, track, the router pool's description, question types, and `make`, which draws
    one Item."""

    name: str
    track: str  # "domain" | "ability" | "text" | "pretrain"
    description: str  # one line for the router's pool
    question_types: tuple[str, ...]
    make: Callable[[np.random.Generator, str, int, str], Item]  # (rng, split, image_size, question_type)
    shift: str = ""  # how the test split differs from training, in words (the ability track's); "" = no shift


def pick(rng: np.random.Generator, options):
    """A uniformly random element of `options` (a dict gives a key), drawn from `rng` so that generation stays
    deterministic."""
    options = list(options)
    return options[int(rng.integers(len(options)))]


def template(rng: np.random.Generator, templates: list[str], **kw) -> str:
    """One of `templates`, picked with `rng` and filled in with `kw`."""
    return pick(rng, templates).format(**kw)
