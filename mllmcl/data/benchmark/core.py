"""The benchmark's contracts: an Item is one generated question, a Generator makes Items of one task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Item:
    image: "object | None"  # PIL RGB image (image_size x image_size) or None for text-only
    question: str
    answer: str
    answer_type: str  # mllmcl.data.records.ANSWER_TYPES
    choices: list[str] | None
    question_type: str
    render: dict = field(default_factory=dict)  # how it was drawn (the ability track's shift is visible here)


@dataclass(frozen=True)
class Generator:
    name: str
    track: str  # "domain" | "ability" | "text" | "pretrain"
    description: str  # one line for the router's pool
    question_types: tuple[str, ...]
    make: Callable[[np.random.Generator, str, int, str], Item]  # (rng, split, image_size, question_type)


def pick(rng: np.random.Generator, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def template(rng: np.random.Generator, templates: list[str], **kw) -> str:
    return pick(rng, templates).format(**kw)
