"""Course groups: a learning process (an academic group studies a discipline in a semester) as a group in the
discipline's course, named after the academic group, idnumber = the process's id, inside a grouping bufsync
owns (idnumber 1c-processes), so groups made by hand are never touched.

This is the first step of learning processes: the groups. Enrolling the group's students and its teacher,
and the group's members, come next (they share enrolments with buf_subscriptions).
"""

from __future__ import annotations

from typing import Any

from bufsync.adapters.moodle import messages
from bufsync.adapters.moodle.client import MoodleClient, failed
from bufsync.adapters.moodle.entities import register
from bufsync.adapters.moodle.errors import MoodleError
from bufsync.adapters.moodle.isolation import bisect
from bufsync.adapters.moodle.rules import GROUP_COLUMNS
from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile.adapter import Candidate, Existing, Member, Outcome
from bufsync.reconcile.records import Desired

GROUPING_IDNUMBER = "1c-processes"
GROUPING_NAME = "Учебные процессы (1С)"


@register("course_group")
class CourseGroupAdapter:
    def __init__(self, client: MoodleClient, mapping: Mapping, settings: Any = None) -> None:
        self.client = client
        self.mapping = mapping
        self._groups: dict[int, list[dict[str, Any]]] = {}  # course -> its groups, read once a run
        self._groupings: dict[int, int] = {}                # course -> bufsync's grouping there

    # -- reads -------------------------------------------------------------------------------------
    def _course_groups(self, courseid: int) -> list[dict[str, Any]]:
        if courseid not in self._groups:
            self._groups[courseid] = list(self.client.call("core_group_get_course_groups", {"courseid": courseid}))
        return self._groups[courseid]

    def _grouping(self, courseid: int) -> int:
        """bufsync's grouping in the course, made on first need (always with its idnumber: Moodle 4.5 fails
        the answer of a create without one, though the grouping is made)."""
        if courseid not in self._groupings:
            found = [g for g in self.client.call("core_group_get_course_groupings", {"courseid": courseid})
                     if g.get("idnumber") == GROUPING_IDNUMBER]
            if found:
                self._groupings[courseid] = int(found[0]["id"])
            else:
                made = self.client.call("core_group_create_groupings", {"groupings": [
                    {"courseid": courseid, "name": GROUPING_NAME, "description": "", "idnumber": GROUPING_IDNUMBER}]},
                    write=True)
                self._groupings[courseid] = int(made[0]["id"])
        return self._groupings[courseid]

    # -- what the core asks ----------------------------------------------------------------------
    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        name = str(desired.payload.get("name") or "").strip()
        if not name:
            return messages.with_code("Пустой код академической группы: группе в курсе нужно имя; заполните "
                                      "group_code в 1С", "missinggroupname")
        if "<" in name and ">" in name:
            return messages.with_code("В коде группы есть HTML-теги: Moodle не примет такое имя группы",
                                      "invalidparameter")
        if len(name) > GROUP_COLUMNS["name"]:
            return messages.with_code(f"Код группы длиннее {GROUP_COLUMNS['name']} символов: Moodle не сохранит "
                                      "такое имя группы", "groupnametoolong")
        start, end = desired.payload.get("timestart"), desired.payload.get("timeend")
        if start and end and int(start) > int(end):
            return messages.with_code("Дата начала учебного процесса позже даты окончания; исправьте даты в 1С",
                                      "datesorder")
        applied = existing.applied if existing is not None else None
        if applied and applied.get("courseid") not in (None, desired.value("courseid")):
            return messages.with_code("У учебного процесса сменился курс: группа в Moodle не переносится между "
                                      "курсами; заведите новый учебный процесс", "coursechanged")
        return None

    def correlate(self, items: list[Desired], rules: list[Correlation]) -> dict[str, list[Candidate]]:
        """A group of the course with the process's idnumber (made before the ledger knew it) is adopted."""
        found: dict[str, list[Candidate]] = {}
        for desired in items:
            courseid = desired.value("courseid")
            for index, rule in enumerate(rules):
                want = desired.correlation[index]
                if courseid is None or want in (None, ""):
                    continue
                hits = [Candidate(int(g["id"]), index, {r.remote: g.get(r.remote) for r in rules})
                        for g in self._course_groups(int(courseid)) if str(g.get(rule.remote)) == str(want)]
                if hits:
                    found[desired.key] = hits
                    break
        return found

    def find(self, values: list[Any]) -> dict[Any, int]:
        return {}  # no mapping looks a process up

    def create(self, items: list[Desired]) -> list[Outcome]:
        records: list[dict[str, Any]] = [
            {"courseid": int(d.value("courseid")), "name": str(d.payload["name"]).strip(), "description": "",
             "idnumber": str(d.payload["idnumber"])} for d in items]
        results = self.client.create_groups(records)
        for record in records:
            self._groups.pop(record["courseid"], None)
        made = zip(records, results, strict=True)
        self._assign([(record["courseid"], int(result.remote_id)) for record, result in made
                      if result.ok and result.remote_id is not None])
        return [r if r.ok else Outcome(False, error=_refusal(r.code, r.error or ""), code=r.code) for r in results]

    def update(self, items: list[tuple[Desired, Existing]]) -> list[Outcome]:
        """A rename; an adopted group also joins bufsync's grouping. A repair (--full) of a group deleted by hand
        makes it again: a new id, so the rows that name it (the process's members) follow it."""
        made = self._make_again([(d, e) for d, e in items if e.applied is None])
        renames = [(d, e) for d, e in items if d.key not in made]
        records: list[dict[str, Any]] = [{"id": int(e.required_id), "name": str(d.payload["name"]).strip()}
                                         for d, e in renames]
        out, renamed = [], []
        for (desired, existing), result in zip(renames, self._rename(records), strict=True):
            courseid = int(desired.value("courseid"))
            self._groups.pop(courseid, None)
            if isinstance(result, MoodleError):
                out.append(failed(result, _refusal(result.errorcode, messages.from_moodle(result))))
                continue
            renamed.append((courseid, int(existing.required_id)))
            out.append(Outcome(True, existing.required_id))
        self._assign(renamed)
        done = iter(out)
        return [made[d.key] if d.key in made else next(done) for d, _ in items]

    def _make_again(self, repairs: list[tuple[Desired, Existing]]) -> dict[str, Outcome]:
        """Repairs whose group is gone from its course: created again (key -> outcome)."""
        gone = [d for d, e in repairs if int(e.required_id) not in
                {int(g["id"]) for g in self._course_groups(int(d.value("courseid")))}]
        return dict(zip((d.key for d in gone), self.create(gone), strict=True)) if gone else {}

    def _rename(self, groups: list[dict[str, Any]]) -> list[None | MoodleError]:
        """One call, all or nothing in Moodle: a group it refuses (a name taken) fails alone."""
        def send(batch: list[dict[str, Any]]) -> list[None]:
            self.client.call("core_group_update_groups", {"groups": batch}, write=True)
            return [None] * len(batch)
        return bisect(groups, send)

    def suspend(self, items: list[Existing]) -> list[Outcome]:
        return [Outcome(True, e.remote_id) for e in items]  # a group has no suspended state: it stays

    def delete(self, items: list[Existing]) -> list[Outcome]:
        return self.suspend(items)  # a process that vanished keeps its group (and its members' work) in Moodle

    def apply_groups(self, groups: list[list[Member]]) -> list[Outcome]:
        raise NotImplementedError("course groups are not grouped rows")

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        """--full: a group deleted or renamed by hand."""
        out = set()
        for desired, existing in items:
            groups = {int(g["id"]): g for g in self._course_groups(int(desired.value("courseid")))}
            group = groups.get(int(existing.required_id))
            if group is None or group.get("name") != str(desired.payload["name"]).strip():
                out.add(desired.key)
        return out

    def _assign(self, groups: list[tuple[int, int]]) -> None:
        """(course, group) pairs into bufsync's grouping of each course, in one call (assigning twice is
        silent in Moodle)."""
        if groups:
            self.client.call("core_group_assign_grouping", {"assignments": [
                {"groupingid": self._grouping(courseid), "groupid": groupid} for courseid, groupid in groups]},
                write=True)


def _refusal(code: str | None, text: str) -> str:
    """A name Moodle refuses (invalidparameter) is one the course has already: tags and blanks are refused
    before sending. Any other refusal keeps Moodle's own words."""
    if code == "invalidparameter":
        return messages.with_code("В курсе уже есть группа с таким именем (другой учебный процесс той же группы "
                                  "или группа, созданная вручную); имя группы в курсе должно быть уникальным",
                                  "invalidparameter")
    return text
