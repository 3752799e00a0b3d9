"""Load a folder of mapping files and check what no single file can: references between them."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from bufsync.buffer.derived import derivation_problems
from bufsync.errors import ConfigError, Problem
from bufsync.mapping.model import Mapping
from bufsync.validation import validate
from bufsync.yamlfile import YamlDocument, load_yaml


@dataclass
class MappingSet:
    """Every mapping of a site, in dependency order."""

    mappings: dict[str, Mapping]
    files: dict[str, Path] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Mapping]:
        return (self.mappings[name] for name in (self.order or list(self.mappings)))

    def __getitem__(self, name: str) -> Mapping:
        return self.mappings[name]

    def __contains__(self, name: str) -> bool:
        return name in self.mappings

    def synced(self) -> list[Mapping]:
        return [m for m in self if m.sync is not None]

    def attached_to(self, name: str) -> list[Mapping]:
        return [m for m in self if m.attach is not None and m.attach.mapping == name]

    def grouped_with(self, name: str) -> list[Mapping]:
        """The other mappings whose rows share remote records with this one's (`group_with`, either way)."""
        seen, todo = {name}, [name]
        while todo:
            current = self.mappings[todo.pop()]
            linked = list(current.sync.group_with if current.sync else [])
            linked += [m.name for m in self.mappings.values() if m.sync and current.name in m.sync.group_with]
            for other in linked:
                if other in self.mappings and other not in seen:
                    seen.add(other)
                    todo.append(other)
        return [self.mappings[n] for n in sorted(seen - {name})]

    def load_markers(self) -> Mapping | None:
        return next((m for m in self if m.load_markers is not None), None)


class _Checker:
    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def fail(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(Problem(self.doc.file, ".".join(map(str, path)), message, self.doc.line_of(path)))

    def column(self, mapping: Mapping, path: tuple[str | int, ...], name: str, own: bool = False) -> None:
        names = mapping.table.all_column_names if own else [c.name for c in mapping.table.columns]
        if name not in names:
            self.fail(path, f"no column '{name}' in table {mapping.table.name}; "
                            f"expected one of: {', '.join(names)}")


def _check_file(mapping: Mapping, doc: YamlDocument) -> list[Problem]:
    """Every column a key names must exist; names must not collide."""
    c = _Checker(doc)
    table = mapping.table
    seen: dict[str, int] = {}
    for i, col in enumerate(table.columns):
        if col.name in seen:
            c.fail(("table", "columns", i, "name"), f"column '{col.name}' is declared twice")
        seen[col.name] = i
    if not table.key:
        c.fail(("table", "columns"), "no key column; mark the primary key columns with 'key: true'")
    if table.writeback:
        for role, name in table.writeback.columns().items():
            if name in seen:
                c.fail(("table", "writeback", role),
                       f"'{name}' is also a column 1C writes; engine and 1C columns never overlap")
        if not (mapping.sync and mapping.sync.inbound):
            c.fail(("table", "writeback"), "only a table the engine reads (an inbound sync) has writeback columns")
    if table.stamps:
        stamped = table.stamps.columns()
        if not (mapping.sync and not mapping.sync.inbound):
            c.fail(("table", "stamps"), "only a table the engine writes (an outbound sync) has stamps")
        for role, name in stamped.items():
            declared = table.column(name)
            c.column(mapping, ("table", "stamps", role), name)
            if declared is not None and declared.portable.name != "datetime":
                c.fail(("table", "stamps", role), f"column '{name}' is {declared.type}; a stamp is a datetime column")
            if declared is not None and mapping.sync and name in mapping.sync.fields:
                c.fail(("table", "stamps", role), f"column '{name}' is also a field; the engine sets a stamp itself")
            if declared is not None and declared.key:
                c.fail(("table", "stamps", role), f"column '{name}' is a key column; a stamp cannot be")
    if mapping.sync and mapping.sync.on_missing == "mark" and not (table.stamps and table.stamps.removed_at):
        c.fail(("sync", "on_missing"), "'mark' needs table.stamps.removed_at: the column that records when the "
                                       "remote record went away")
    for i, index in enumerate(table.indexes):
        for j, name in enumerate(index.columns):
            c.column(mapping, ("table", "indexes", i, "columns", j), name, own=True)
    sync = mapping.sync
    if sync:
        for i, name in enumerate(sync.key):
            c.column(mapping, ("sync", "key", i), name)
        for i, rule in enumerate(sync.correlation):
            c.column(mapping, ("sync", "correlation", i, "source"), rule.source)
        for target, spec in sync.fields.items():
            if sync.inbound and spec.source is not None:
                c.column(mapping, ("sync", "fields", target, "source"), spec.source)
            if not sync.inbound:
                c.column(mapping, ("sync", "fields", target), target)
        if sync.status:
            c.column(mapping, ("sync", "status", "column"), sync.status.column)
        if not sync.inbound:  # the engine writes whole rows: it must have a value for every required column
            required_ok = set(table.stamps.columns().values()) if table.stamps else set()
            for i, name in enumerate(sync.key):
                if name not in sync.fields:
                    c.fail(("sync", "key", i), f"key column '{name}' has no field; the engine writes the key too")
            for i, col in enumerate(table.columns):
                if col.name not in sync.fields and col.name not in required_ok and not col.is_nullable \
                        and col.default is None:
                    c.fail(("table", "columns", i), f"column '{col.name}' is required but neither a field nor a "
                                                   "stamp; the engine could not fill it")
    if mapping.attach:
        a = mapping.attach
        for column in a.join:
            c.column(mapping, ("attach", "join", column), column)
        c.column(mapping, ("attach", "name_column"), a.name_column)
        c.column(mapping, ("attach", "value_column"), a.value_column)
    if mapping.load_markers:
        lm = mapping.load_markers
        for role in ("entity", "batch_id", "status", "rows_expected"):
            c.column(mapping, ("load_markers", role), getattr(lm, role))
    return c.problems


def _check_references(ms: MappingSet, docs: dict[str, YamlDocument]) -> list[Problem]:
    problems: list[Problem] = []
    known = ", ".join(sorted(ms.mappings))
    markers = ms.load_markers()
    for name, mapping in ms.mappings.items():
        c = _Checker(docs[name])
        if mapping.sync:
            for i, dep in enumerate(mapping.sync.depends_on):
                if dep not in ms:
                    c.fail(("sync", "depends_on", i), f"unknown mapping '{dep}'; known: {known}")
                elif ms[dep].sync is None:
                    c.fail(("sync", "depends_on", i), f"mapping '{dep}' has no sync section to wait for")
            for target, spec in mapping.sync.fields.items():
                if spec.lookup is None:
                    continue
                path = ("sync", "fields", target, "lookup")
                if spec.lookup not in ms:
                    c.fail(path, f"unknown mapping '{spec.lookup}'; known: {known}")
                elif (looked_up := ms[spec.lookup].sync) is None or not looked_up.inbound:
                    c.fail(path, f"mapping '{spec.lookup}' does not create remote records to look up")
            for j, peer_name in enumerate(mapping.sync.group_with):
                where: tuple[str | int, ...] = ("sync", "group_with", j)
                peer = ms.mappings.get(peer_name)
                if peer is None or peer.sync is None:
                    c.fail(where, f"unknown mapping '{peer_name}'; known: {known}")
                elif not mapping.sync.group_by or len(peer.sync.group_by) != len(mapping.sync.group_by):
                    c.fail(where, f"'{peer_name}' groups its rows by {peer.sync.group_by or 'nothing'}, this mapping "
                                  f"by {mapping.sync.group_by or 'nothing'}; grouped together, both need group_by "
                                  "with the same number of columns (the same values in the same order)")
                elif (peer.sync.target.system, peer.sync.target.entity) != (
                        mapping.sync.target.system, mapping.sync.target.entity):
                    c.fail(where, f"'{peer_name}' writes {peer.sync.target.entity}, this mapping "
                                  f"{mapping.sync.target.entity}; only records of one entity are shared")
            batch = mapping.sync.guards.require_batch
            if batch is not None and markers is None:
                c.fail(("sync", "guards", "require_batch"),
                       "no mapping declares load_markers (the buf_batches table); add one or remove this guard")
        if mapping.attach:
            a = mapping.attach
            parent = ms.mappings.get(a.mapping)
            if parent is None:
                c.fail(("attach", "mapping"), f"unknown mapping '{a.mapping}'; known: {known}")
            elif parent.sync is None or not parent.sync.inbound:
                c.fail(("attach", "mapping"), f"mapping '{a.mapping}' is not an inbound sync to attach to")
            else:
                for column, parent_column in a.join.items():
                    if parent_column not in parent.table.key:
                        c.fail(("attach", "join", column),
                               f"'{parent_column}' is not a key column of {parent.table.name}; "
                               f"expected one of: {', '.join(parent.table.key)}")
        if mapping.table.derived is not None:
            for sub, message in derivation_problems(mapping, ms):
                c.fail(("table", "derived", *sub), message)
        problems += c.problems
    tables: dict[str, str] = {}
    for name, mapping in ms.mappings.items():
        other = tables.get(mapping.table.name)
        if other:
            problems.append(Problem(docs[name].file, "table.name",
                                    f"table '{mapping.table.name}' is also declared by mapping '{other}'",
                                    docs[name].line_of(("table", "name"))))
        tables[mapping.table.name] = name
    if len([m for m in ms.mappings.values() if m.load_markers]) > 1:
        problems.append(Problem(None, "load_markers", "more than one mapping declares load_markers"))
    return problems


def _order(ms: MappingSet, docs: dict[str, YamlDocument]) -> list[str]:
    # a self-lookup (a department's parent department) orders rows inside one mapping, not mappings
    graph = {name: [d for d in m.dependencies if d in ms and d != name] for name, m in sorted(ms.mappings.items())}
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = exc.args[1]
        first = cycle[0]
        raise ConfigError(Problem(docs[first].file, "sync.depends_on",
                                  f"dependency cycle: {' -> '.join(cycle)}",
                                  docs[first].line_of(("sync", "depends_on")))) from None


_loaded: dict[tuple[Any, ...], MappingSet] = {}
_loaded_lock = threading.Lock()


def load_mappings(directory: Path) -> MappingSet:
    """Every *.yaml in the folder; all problems of all files reported together.

    A folder whose files hold the same bytes as at the last load is not parsed and validated again (a daemon and a
    test suite load the same mappings for every run; parsing is what costs, reading a few small files does not).
    The MappingSet returned is shared, so it is never changed by its users."""
    if not directory.is_dir():
        raise ConfigError(Problem(directory, "mappings_dir", "not a folder of mapping files"))
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not files:
        raise ConfigError(Problem(directory, "mappings_dir", "no *.yaml mapping files in this folder"))
    key = (str(directory.resolve()), *((f.name, hashlib.sha1(f.read_bytes()).digest()) for f in files))
    with _loaded_lock:
        cached = _loaded.get(key)
    if cached is not None:
        return cached
    loaded = _load(files)
    with _loaded_lock:
        if len(_loaded) >= 32:
            _loaded.clear()
        _loaded[key] = loaded
    return loaded


def _load(files: list[Path]) -> MappingSet:
    problems: list[Problem] = []
    mappings: dict[str, Mapping] = {}
    docs: dict[str, YamlDocument] = {}
    paths: dict[str, Path] = {}
    for file in files:
        try:
            doc = load_yaml(file)
            if not isinstance(doc.data, dict):
                raise ConfigError(Problem(file, "", "expected a mapping of keys (format, name, table, ...)", 1))
            mapping = validate(Mapping, doc.data, doc)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if mapping.name != file.stem:
            problems.append(Problem(file, "name", f"the name must match the file name '{file.stem}'",
                                    doc.line_of(("name",))))
            continue
        problems += _check_file(mapping, doc)
        mappings[mapping.name], docs[mapping.name], paths[mapping.name] = mapping, doc, file
    if problems:
        raise ConfigError(problems)
    ms = MappingSet(mappings, paths)
    problems = _check_references(ms, docs)
    if problems:
        raise ConfigError(problems)
    ms.order = _order(ms, docs)
    return ms
