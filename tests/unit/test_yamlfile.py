from pathlib import Path

import pytest

from bufsync.errors import ConfigError
from bufsync.yamlfile import load_yaml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_lines_of_nested_keys_and_list_items(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "a: 1\nb:\n  c:\n    - x\n    - {d: 2}\n"))
    assert doc.data == {"a": 1, "b": {"c": ["x", {"d": 2}]}}
    assert doc.lines[("a",)] == 1
    assert doc.lines[("b", "c")] == 3
    assert doc.lines[("b", "c", 1, "d")] == 5
    # a path below a known key falls back to the deepest known prefix
    assert doc.line_of(("b", "c", 1, "d", "missing")) == 5


def test_duplicate_key_is_an_error_with_both_lines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_yaml(write(tmp_path, "a: 1\nb: 2\na: 3\n"))
    assert "f.yaml:3: a: duplicate key (first at line 1)" in str(err.value)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_yaml(write(tmp_path, "a: 1\nb: [1, 2\nc: 3\n"))
    message = str(err.value)
    assert "f.yaml:" in message and "malformed YAML" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "nope.yaml")
