"""params.yaml access: one loader so every stage and command reads the same file the same way."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or lacks a key a stage needs."""


def load_params(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the project root or pass --params)")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of one params section, so a stage cannot mutate what another reads."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml: section '{name}' is missing or not a mapping")
    return copy.deepcopy(value)


def tasks(params: dict[str, Any]) -> list[str]:
    value = params.get("tasks")
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise ConfigError("params.yaml: 'tasks' must be a list of task names")
    if len(set(value)) != len(value):
        raise ConfigError(f"params.yaml: 'tasks' lists a task twice: {value}")
    return list(value)
