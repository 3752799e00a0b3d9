"""Turn pydantic errors into Problems: file, key path, line, what was found, what was expected."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from bufsync.errors import ConfigError, Problem
from bufsync.yamlfile import YamlDocument

# Names of tables and columns: lower-case ASCII, unquoted in every dialect.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _unwrap(annotation: Any) -> list[Any]:
    """The classes a field can hold: Optional/Union/list/dict unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [c for a in typing.get_args(annotation) for c in _unwrap(a)]
    if origin in (list, tuple, set, frozenset):
        return [c for a in typing.get_args(annotation) for c in _unwrap(a)]
    if origin is dict:
        args = typing.get_args(annotation)
        return _unwrap(args[1]) if len(args) == 2 else []
    return [annotation]


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the last element of loc, to list its allowed keys."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int) or part not in current.model_fields:
            continue  # a list index or dict key: the annotation was already unwrapped
        candidates = [c for c in _unwrap(current.model_fields[part].annotation)
                      if isinstance(c, type) and issubclass(c, BaseModel)]
        current = candidates[0] if candidates else None
    return current


def _is_secret(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or isinstance(part, int) or part not in current.model_fields:
            continue
        annotations = _unwrap(current.model_fields[part].annotation)
        if SecretStr in annotations:
            return True
        models = [c for c in annotations if isinstance(c, type) and issubclass(c, BaseModel)]
        current = models[0] if models else None
    return False


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def problems_from(exc: ValidationError, model: type[BaseModel], doc: YamlDocument | None,
                  prefix: tuple[str | int, ...] = ()) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic puts union member tags into loc (e.g. 'str', 'int'); drop what is not a data key
        path = prefix + loc
        data_path = _data_path(doc, path)
        key = ".".join(str(p) for p in data_path)
        kind = err["type"]
        if kind == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            allowed = ", ".join(sorted(owner.model_fields)) if owner else ""
            message = f"unknown key; expected one of: {allowed}" if allowed else "unknown key"
        elif kind == "missing":
            message = "required key is missing"
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            found = "***" if _is_secret(model, loc) else _describe(err.get("input"))
            message = f"{msg} (found {found})"
        line = doc.line_of(data_path) if doc else None
        problems.append(Problem(doc.file if doc else None, key, message, line))
    return problems


def _data_path(doc: YamlDocument | None, path: tuple[Any, ...]) -> tuple[Any, ...]:
    """Keep only the loc parts that exist in the YAML data (drops pydantic's union tags)."""
    if doc is None:
        return path
    kept: list[Any] = []
    node = doc.data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
            kept.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            kept.append(part)
        elif isinstance(node, (dict, list)):
            kept.append(part)  # a missing or unknown key: name it, the line is its parent's
            node = None
        # anything else is a pydantic-internal tag (union member name): skip it
    return tuple(kept)


def validate(model: type[BaseModel], data: Any, doc: YamlDocument | None,
             prefix: tuple[str | int, ...] = (), context: dict[str, Any] | None = None) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, model, doc, prefix)) from None


def http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")
