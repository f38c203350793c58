"""Reading params.yaml into `Params`, and turning schema violations into one line each that names the key path,
the offending value and the rule (`params.yaml: gate.max_prior_drop: '3%' is not a number between 0 and 1`)."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from mllmcl.config.schema import MODULE_NAME_PATTERN, REGISTRY_NAME_PATTERN, URL_PATTERN, Params
from mllmcl.errors import ConfigError

PATTERNS = {
    MODULE_NAME_PATTERN: "a module name (letters, digits, '_' and '.')",
    URL_PATTERN: "an http:// or https:// URL",
    REGISTRY_NAME_PATTERN: "a name of letters, digits, '_', '.' and '-'",
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys silently; a config must not."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"line {key_node.start_mark.line + 1}: key {key!r} appears twice (first on line {seen[key]})"
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_params(path: Path | str = "params.yaml") -> Params:
    """Load and check a params file; every problem becomes a `ConfigError` naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (run from the project root or pass --params)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: byte {e.start} is not valid UTF-8") from None
    return parse_params(data, source=str(path))


def parse_params(data: Any, *, source: str = "params.yaml") -> Params:
    """`Params` from already-parsed data (a dict as YAML gives it)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise ConfigError("\n".join(f"{source}: {line}" for line in explain(e))) from None


# --- messages -----------------------------------------------------------------------------------------------
def explain(error: ValidationError) -> list[str]:
    """One line per problem: key path, value, rule."""
    lines: list[str] = []
    seen: set[tuple] = set()
    for err in error.errors(include_url=False):
        loc_parts = list(err["loc"])
        cut = next((i for i, p in enumerate(loc_parts) if _is_type_tag(str(p))), len(loc_parts))
        key = tuple(loc_parts[:cut])
        if key in seen:  # a union reports once per member it tried: the first (most specific) one is kept
            continue
        seen.add(key)
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "value_error" or kind == "assertion_error":
            msg = str(err.get("ctx", {}).get("error") or err["msg"]).removeprefix("Value error, ")
            lines.append(msg if ":" in msg.split(" ", 1)[0] else f"{_path(loc) or 'params'}: {msg}")
            continue
        path = _path(loc)
        if kind == "extra_forbidden":
            lines.append(f"{path}: unknown key{_suggest(loc)}")
            continue
        rule = _rule(_field_at(loc), item=isinstance(loc[-1], int) if loc else False)
        if kind == "missing":
            lines.append(f"{path}: missing (needs {rule})")
        else:
            lines.append(f"{path}: {_show(err['input'])} is not {rule}")
    return lines


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_type_tag(part):
            out += f".{part}" if out else str(part)
    return out.replace("validate_", "validate")


def _is_type_tag(part: str) -> bool:
    """Union errors add the tried member to the location (`int`, `literal['auto']`)."""
    return part in {"int", "float", "str", "bool", "none"} or part.startswith(
        ("literal[", "function-", "constrained-", "list[")
    )


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def _field_at(loc: tuple) -> FieldInfo | None:
    model: type[BaseModel] | None = Params
    field: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int) or _is_type_tag(str(part)):
            continue
        if model is None:
            return field
        field = _lookup(model, str(part))
        if field is None:
            return None
        model = _submodel(field.annotation)
    return field


def _lookup(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _submodel(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _suggest(loc: tuple) -> str:
    parent = _field_at(loc[:-1]) if len(loc) > 1 else None
    model = _submodel(parent.annotation) if parent else Params
    if model is None:
        return ""
    names = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(names)})"


def _rule(field: FieldInfo | None, *, item: bool = False) -> str:
    if field is None:
        return "valid here"
    annotation = field.annotation
    bounds = _bounds(field.metadata)
    if item:
        members = (
            typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
        )
        for candidate in (annotation, *members):
            if typing.get_origin(candidate) is list:
                inner = typing.get_args(candidate)[0]
                return _describe(inner, _bounds(getattr(inner, "__metadata__", ())))
    return _describe(annotation, bounds)


def _bounds(metadata) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in metadata:
        for attr in ("ge", "gt", "le", "lt", "min_length", "pattern"):
            value = getattr(m, attr, None)
            if value is not None:
                out[attr] = value
    return out


def _describe(annotation: Any, bounds: dict[str, Any]) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        for m in meta:
            bounds = {**_bounds(getattr(m, "metadata", [m])), **_bounds([m]), **bounds}
        return _describe(base, bounds)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        text = " or ".join(_describe(a, bounds) for a in members)
        return text + (" or null" if len(members) < len(typing.get_args(annotation)) else "")
    if origin is typing.Literal:
        values = [repr(v) for v in typing.get_args(annotation)]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    if origin is list:
        inner = typing.get_args(annotation)[0]
        what = "names" if _describe(inner, {}).startswith("a string") else "values"
        return f"a list of {what}" + (" (at least one)" if bounds.get("min_length") else "")
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        noun = "an integer" if annotation is int else "a number"
        return noun + _range(bounds)
    if annotation is str:
        if "pattern" in bounds:
            return PATTERNS.get(bounds["pattern"], f"a string matching {bounds['pattern']}")
        return "a non-empty string" if bounds.get("min_length") else "a string"
    if _submodel(annotation):
        return "a mapping of its keys"
    return f"of type {getattr(annotation, '__name__', annotation)}"


def _range(b: dict[str, Any]) -> str:
    lo, hi = b.get("ge", b.get("gt")), b.get("le", b.get("lt"))
    if "ge" in b and "le" in b:
        return f" between {_num(lo)} and {_num(hi)}"
    parts = []
    if lo is not None:
        parts.append(f"{'>=' if 'ge' in b else '>'} {_num(lo)}")
    if hi is not None:
        parts.append(f"{'<=' if 'le' in b else '<'} {_num(hi)}")
    return (" " + " and ".join(parts)) if parts else ""


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# --- `mllmcl params show` -----------------------------------------------------------------------------------
def describe(params: Params) -> str:
    """The effective configuration, one key a line, each with its description."""
    lines: list[str] = []

    def walk(model: BaseModel, prefix: str, indent: int) -> None:
        for name, info in type(model).model_fields.items():
            key = info.alias or name
            value = getattr(model, name)
            pad = "  " * indent
            if isinstance(value, BaseModel):
                doc = (type(value).__doc__ or "").strip().splitlines()[0] if type(value).__doc__ else ""
                lines.append(f"{pad}{key}:" + (f"  # {doc}" if doc else ""))
                walk(value, f"{prefix}{key}.", indent + 1)
            else:
                shown = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
                lines.append(f"{pad}{key}: {shown}" + (f"  # {info.description}" if info.description else ""))

    walk(params, "", 0)
    return "\n".join(lines)
