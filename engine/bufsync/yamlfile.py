"""YAML loading that remembers where every key was, so errors can name the line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bufsync.errors import ConfigError, Problem

Path_ = tuple[str | int, ...]
# libyaml's parser when PyYAML was built with it (the wheels are): the same nodes and marks, about ten times
# faster, which is most of loading the mappings in a run with nothing to do
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class YamlDocument:
    """Parsed data plus the line (1-based) of each key path."""

    file: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """The line of the deepest known prefix of `path` (an error may point below a key)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: Path) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    Problem(file, ".".join(map(str, path + (key,))),
                            f"duplicate key (first at line {seen[key]})", line)
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _walk(item, path + (index,), lines, file)


def load_yaml(file: Path) -> YamlDocument:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(Problem(file, "", "file not found")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(file, "", f"cannot read the file: {exc}")) from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(Problem(file, "", f"malformed YAML: {problem}", line)) from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines, file)
    return YamlDocument(file, data, lines)
