"""Moodle courses: create, update changed fields, adopt by idnumber then shortname."""

from __future__ import annotations

from typing import Any

from bufsync.adapters.moodle import messages
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities import changed, register, same_text
from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile.adapter import Candidate, Existing, Outcome
from bufsync.reconcile.records import Desired

# `template` needs core_course_duplicate_course, which bufsync's service does not include yet
_PSEUDO = {"template"}


@register("course")
class CourseAdapter:
    def __init__(self, client: MoodleClient, mapping: Mapping, settings: Any = None) -> None:
        self.client = client
        self.mapping = mapping
        self.default_category = getattr(settings, "default_category", 1) if settings else 1
        assert mapping.sync is not None  # an entity adapter serves a synced mapping
        fields = mapping.sync.fields
        self.names = [n for n in fields if n not in _PSEUDO]
        self.updatable = [n for n, f in fields.items() if f.policy == "force" and n not in _PSEUDO]
        self._index: dict[str, dict[str, list[dict[str, Any]]]] | None = None

    def _value(self, desired: Desired, name: str) -> Any:
        value = desired.value(name)
        if name == "categoryid" and value is None:
            return self.default_category
        return value

    def _record(self, desired: Desired, names: list[str], creating: bool) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for name in names:
            value = self._value(desired, name)
            if value is None:
                if name in ("startdate", "enddate"):
                    record[name] = 0
                elif not creating:
                    record[name] = ""
                continue
            record[name] = value
        return record

    def _index_all(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        if self._index is None:
            index: dict[str, dict[str, list[dict[str, Any]]]] = {"idnumber": {}, "shortname": {}}
            for course in self.client.get_courses_by_field():
                if int(course["id"]) == 1:
                    continue  # the site course
                for field in index:
                    if course.get(field):
                        index[field].setdefault(str(course[field]), []).append(course)
            self._index = index
        return self._index

    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        """The client's own checks on the record create() or update() would send, so a dry run rejects
        exactly what the real run does (a fullname of 255 characters, tags in a name)."""
        start, end = desired.value("startdate"), desired.value("enddate")
        if start and end and int(end) < int(start):
            return messages.with_code("Дата окончания курса раньше даты начала; исправьте end_date или start_date",
                                      "enddatebeforestartdate")
        if existing is None:
            record = self._record(desired, self.names, True)
        else:
            view = {n: self._value(desired, n) for n in self.updatable}
            record = self._record(desired, changed(view, existing.applied, self.updatable), False)
        refused = self.client.prevalidate_course(record)
        return None if refused is None else refused.error

    def create(self, items: list[Desired]) -> list[Outcome]:
        results = self.client.create_courses([self._record(d, self.names, True) for d in items])
        self._index = None
        for desired, result in zip(items, results, strict=False):
            template = desired.payload.get("template")
            if result.ok and template:  # said, not done: the row must not read a plain ok
                result.warning = messages.with_code(
                    f"Курс создан, но настройки курса-образца «{template}» не скопированы: копирование курса "
                    "(core_course_import_course) не входит в службу bufsync; настройте курс в Moodle или "
                    "очистите template_shortname", "templatenotapplied")
        return results

    def update(self, items: list[tuple[Desired, Existing]]) -> list[Outcome]:
        records = []
        for desired, existing in items:
            view = {n: self._value(desired, n) for n in self.updatable}
            record = self._record(desired, changed(view, existing.applied, self.updatable), False)
            record["id"] = existing.remote_id
            records.append(record)
        return self.client.update_courses(records)

    def suspend(self, items: list[Existing]) -> list[Outcome]:
        return self.client.update_courses([{"id": e.remote_id, "visible": 0} for e in items])

    def delete(self, items: list[Existing]) -> list[Outcome]:
        results = self.client.delete_courses([int(e.required_id) for e in items])
        self._index = None
        return [r for r in results]

    def correlate(self, items: list[Desired], rules: list[Correlation]) -> dict[str, list[Candidate]]:
        index = self._index_all()
        remotes = [rule.remote for rule in rules]
        found: dict[str, list[Candidate]] = {}
        for position, rule in enumerate(rules):
            for desired in items:
                value = desired.correlation[position]
                if desired.key not in found and value not in (None, "") and rule.remote in index:
                    courses = index[rule.remote].get(str(value))
                    if courses:
                        found[desired.key] = [Candidate(int(c["id"]), position, {n: c.get(n) for n in remotes})
                                              for c in courses]
        return found

    def find(self, values: list[Any]) -> dict[Any, int]:
        index = self._index_all()["idnumber"]
        return {v: int(index[str(v)][0]["id"]) for v in values if len(index.get(str(v), [])) == 1}

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        ids = ",".join(str(e.remote_id) for _, e in items)
        remote = {int(c["id"]): c for c in self.client.get_courses_by_field("ids", ids)}
        out = set()
        for desired, existing in items:
            course = remote.get(int(existing.required_id))
            if course is None:
                out.add(desired.key)
                continue
            for name in self.updatable:
                want = self._value(desired, name)
                have = course.get(name)
                if name in ("startdate", "enddate"):  # no date is sent as 0 and read back as 0
                    want, have = want or 0, have or 0
                if not same_text(want, have):  # fullname and shortname come back through format_string()
                    out.add(desired.key)
                    break
        return out
