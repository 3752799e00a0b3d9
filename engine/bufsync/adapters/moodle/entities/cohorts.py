"""Cohort members: the contingent (an academic group, a department) as Moodle cohorts.

A row says a person belongs to a cohort (`cohort`: the group or department code) while its status is
active. The cohort is bufsync's own: its idnumber is the code with the configured prefix (`moodle.cohorts.
prefix`), so bufsync changes and empties only cohorts it made. It is created on first need (named after
`cohort_name`, or the code), renamed when the group is, and kept when it empties. A row that moves to
another cohort leaves the old one; an inactive or vanished row leaves its cohort; rows sharing one
membership (`group_by`: one person's two positions in a department) keep it while any of them is active.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bufsync.adapters.moodle import messages
from bufsync.adapters.moodle.client import MoodleClient, failed
from bufsync.adapters.moodle.entities import register
from bufsync.adapters.moodle.errors import GONE, MoodleError
from bufsync.adapters.moodle.isolation import bisect
from bufsync.adapters.moodle.rules import COHORT_COLUMNS
from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile.adapter import Candidate, Existing, Member, Outcome
from bufsync.reconcile.records import Desired

DEFAULT_PREFIX = "1c-"
View = dict[str, Any]  # a row as the ledger keeps it: cohort, cohort_name, category, userid, @active


@dataclass
class Change:
    """What one item (a row, or a group of rows) asks of Moodle: the membership it leaves and the one it wants."""

    leave: tuple[str, int] | None  # (cohort code, userid)
    join: tuple[str, int] | None
    name: str | None = None        # the cohort's name, when the row gives one
    category: int | None = None    # the cohort's category (context: department)


def membership(view: View | None) -> tuple[str, int] | None:
    """The membership a view holds: only an active row with a cohort code and a person is a member. The
    code carries the mapping's own prefix (`cohort_prefix`: achievements' cohorts are ach-<kind>)."""
    if not view or not view.get("@active", True):
        return None
    code, user = view.get("cohort"), view.get("userid")
    if code in (None, "") or user in (None, ""):
        return None
    return f"{view.get('cohort_prefix') or ''}{code}", int(user)


@register("cohort_member")
class CohortMemberAdapter:
    def __init__(self, client: MoodleClient, mapping: Mapping, settings: Any = None) -> None:
        self.client = client
        self.mapping = mapping
        cohorts = getattr(settings, "cohorts", None)
        self.prefix: str = getattr(cohorts, "prefix", DEFAULT_PREFIX)
        self.by_department: bool = getattr(cohorts, "context", "system") == "department"
        self.delete_empty: bool = bool(getattr(cohorts, "delete_empty", False))
        self._ids: dict[str, dict[str, Any]] | None = None  # idnumber -> cohort, read once a run

    # -- cohorts -------------------------------------------------------------------------------
    def idnumber(self, code: str) -> str:
        return f"{self.prefix}{code}"

    def _cohorts(self) -> dict[str, dict[str, Any]]:
        """Every cohort by idnumber (core_cohort_get_cohorts without ids gives them all: one call a run)."""
        if self._ids is None:
            self._ids = {str(c["idnumber"]): c for c in self.client.call("core_cohort_get_cohorts", {})
                         if c.get("idnumber")}
        return self._ids

    def _ensure(self, changes: Sequence[Change]) -> dict[str, str]:
        """Create the cohorts joined that do not exist, rename those whose name changed; code -> why a
        cohort could not be made (its members fail with that reason)."""
        known = self._cohorts()
        wanted: dict[str, Change] = {}
        for change in changes:
            if change.join is not None:
                code = change.join[0]
                if code not in wanted or (change.name and not wanted[code].name):
                    wanted[code] = change
        missing = [code for code in wanted if self.idnumber(code) not in known]
        refused: dict[str, str] = {}
        unnamed = sorted({c.category for code in missing for c in (wanted[code],) if not c.name and c.category})
        if unnamed:  # a department's cohort is named after its category (one read for all of them)
            names = {int(cat["id"]): str(cat["name"]) for cat in self.client.get_categories(
                [{"key": "ids", "value": ",".join(map(str, unnamed))}])}
            for code in missing:
                change = wanted[code]
                if not change.name and change.category in names:
                    change.name = names[change.category]
        if missing:
            records = [self._record(code, wanted[code]) for code in missing]
            for code, record, outcome in zip(missing, records, self.client.create_cohorts(records), strict=True):
                if outcome.ok:
                    known[record["idnumber"]] = {"id": outcome.remote_id, **record}
                else:
                    refused[code] = outcome.error or "ошибка создания когорты"
        renames = [(code, change.name) for code, change in wanted.items()
                   if code not in refused and change.name and self.idnumber(code) in known
                   and known[self.idnumber(code)].get("name") != change.name]
        if renames:
            updates = []
            for code, name in renames:
                cohort = known[self.idnumber(code)]
                updates.append({"id": int(cohort["id"]), "name": name, "idnumber": cohort["idnumber"],
                                "categorytype": self._context(wanted[code].category)})

            for (code, name), result in zip(renames, self._rename(updates), strict=True):
                if isinstance(result, MoodleError):
                    refused[code] = messages.with_code("Moodle не переименовал когорту: " +
                                                       messages.from_moodle(result), result.code)
                else:
                    known[self.idnumber(code)]["name"] = name
        return refused

    def _context(self, category: int | None) -> dict[str, str]:
        """Where a cohort lives: its department's category (moodle.cohorts.context: department, and the row
        gives the category), else the site."""
        if self.by_department and category:
            return {"type": "id", "value": str(category)}
        return {"type": "system", "value": ""}

    def _record(self, code: str, change: Change) -> dict[str, Any]:
        return {"idnumber": self.idnumber(code), "name": change.name or code,
                "categorytype": self._context(change.category), "visible": 1}

    # -- what the core asks ----------------------------------------------------------------------
    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        raw = desired.payload.get("cohort")
        code = None if raw in (None, "") else f"{desired.payload.get('cohort_prefix') or ''}{raw}"
        if desired.active and code is None:
            return messages.with_code("Пустой код группы (подразделения): не понятно, в какую когорту включить "
                                      "человека; заполните его в 1С", "missingcohort")
        if code is not None and len(self.idnumber(str(code))) > COHORT_COLUMNS["idnumber"]:
            return messages.with_code(f"Код «{code}» длиннее {COHORT_COLUMNS['idnumber'] - len(self.prefix)} "
                                      "символов: Moodle не сохранит такой идентификатор когорты",
                                      "cohortidnumbertoolong")
        name = desired.payload.get("cohort_name")
        if name is not None and len(str(name)) > COHORT_COLUMNS["name"]:
            return messages.with_code(f"Наименование группы длиннее {COHORT_COLUMNS['name']} символов: Moodle "
                                      "не сохранит такое имя когорты", "cohortnametoolong")
        return None

    @staticmethod
    def _view(desired: Desired) -> View:
        return {**desired.payload, **{name: desired.resolved.get(name) for name in desired.lookups},
                "@active": desired.active}

    def _change(self, before: View | None, after: View | None) -> Change:
        leave, join = membership(before), membership(after)
        if leave == join:  # the same membership: joined again (a no-op in Moodle), so a rename still applies
            leave = None
        return Change(leave, join, name_of(after), category_of(after))

    def create(self, items: list[Desired]) -> list[Outcome]:
        return self.apply_changes([self._change(None, self._view(d)) for d in items])

    def update(self, items: list[tuple[Desired, Existing]]) -> list[Outcome]:
        return self.apply_changes([self._change(e.applied, self._view(d)) for d, e in items])

    def suspend(self, items: list[Existing]) -> list[Outcome]:
        return self.apply_changes([self._change(e.applied, None) for e in items])

    def delete(self, items: list[Existing]) -> list[Outcome]:
        return self.suspend(items)

    def apply_groups(self, groups: list[list[Member]]) -> list[Outcome]:
        """One membership per group: held while any row of it is active."""
        changes = []
        for members in groups:
            before = next((m.before for m in members if membership(m.before)), None)
            after = next((m.after for m in members if membership(m.after)), None)
            if after is None:
                after = next((m.after for m in members if m.after), None)
            changes.append(self._change(before, after))
        return self.apply_changes(changes)

    def find(self, values: list[Any]) -> dict[Any, int]:
        return {}  # no mapping looks up a membership

    def correlate(self, items: list[Desired], rules: list[Correlation]) -> dict[str, list[Candidate]]:
        return {}  # a membership has nothing to adopt: adding one that exists is a no-op in Moodle

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        """--full: rows whose membership Moodle no longer matches (a member removed or added by hand)."""
        known = self._cohorts()
        wanted = {d.key: membership(self._view(d)) for d, _ in items}
        ids = sorted({int(known[self.idnumber(m[0])]["id"]) for m in wanted.values()
                      if m and self.idnumber(m[0]) in known})
        members: dict[int, set[int]] = {}
        if ids:
            for entry in self.client.call("core_cohort_get_cohort_members", {"cohortids": ids}):
                members[int(entry["cohortid"])] = {int(u) for u in entry.get("userids", [])}
        out = set()
        for key, held in wanted.items():
            if held is None:
                continue
            cohort = known.get(self.idnumber(held[0]))
            if cohort is None or held[1] not in members.get(int(cohort["id"]), set()):
                out.add(key)
        return out

    # -- writing ---------------------------------------------------------------------------------
    def apply_changes(self, changes: list[Change]) -> list[Outcome]:
        """Cohorts made or renamed as the changes need, then the leaves and the joins: one outcome per change."""
        outcomes: list[Outcome | None] = [None] * len(changes)
        refused = self._ensure(changes)
        known = self._cohorts()
        leaving: list[tuple[int, dict[str, int]]] = []
        joining: list[tuple[int, dict[str, Any]]] = []
        for index, change in enumerate(changes):
            if change.join is not None and change.join[0] in refused:
                outcomes[index] = Outcome(False, error=refused[change.join[0]], code="cohortnotcreated")
                continue
            if change.leave is not None:
                cohort = known.get(self.idnumber(change.leave[0]))
                if cohort is not None:  # a cohort deleted by hand has no members to leave
                    leaving.append((index, {"cohortid": int(cohort["id"]), "userid": change.leave[1]}))
            if change.join is not None:
                cohort = known[self.idnumber(change.join[0])]
                joining.append((index, {"cohorttype": {"type": "id", "value": str(cohort["id"])},
                                        "usertype": {"type": "id", "value": str(change.join[1])}}))
        for (index, _), result in zip(leaving, self._leave([m for _, m in leaving]), strict=True):
            if isinstance(result, MoodleError) and result.code not in GONE:
                outcomes[index] = failed(result, messages.with_code(
                    "Не удалось исключить человека из когорты: " + messages.from_moodle(result), result.code))
        joins = [(i, m) for i, m in joining if outcomes[i] is None]
        if joins:
            answer = self.client.call("core_cohort_add_cohort_members", {"members": [m for _, m in joins]},
                                      write=True)
            problems = _warnings_by_user(answer)
            for index, member in joins:
                warning = problems.get(member["usertype"]["value"])
                if warning is not None and warning.get("warningcode") != "3":  # 3: already a member, as wanted
                    outcomes[index] = Outcome(False, error=messages.with_code(
                        "Moodle не включил человека в когорту: " + str(warning.get("message", "")),
                        f"cohortwarning{warning.get('warningcode', '')}"), code="cohortwarning")
        if self.delete_empty:
            self._delete_emptied({c.leave[0] for c in changes if c.leave} - {c.join[0] for c in changes if c.join})
        return [o if o is not None else Outcome(True) for o in outcomes]

    def _delete_emptied(self, codes: set[str]) -> None:
        """moodle.cohorts.delete_empty: the cohorts people left in this batch that have no member now."""
        known = self._cohorts()
        ids = {int(known[self.idnumber(code)]["id"]): code for code in codes if self.idnumber(code) in known}
        if not ids:
            return
        empty = [entry["cohortid"] for entry in self.client.call("core_cohort_get_cohort_members",
                                                                  {"cohortids": sorted(ids)})
                 if not entry.get("userids")]
        if empty:
            self.client.call("core_cohort_delete_cohorts", {"cohortids": empty}, write=True)
            for cohortid in empty:
                known.pop(self.idnumber(ids[int(cohortid)]), None)

    def _rename(self, cohorts: list[dict[str, Any]]) -> list[None | MoodleError]:
        """One call, all or nothing in Moodle: a cohort it refuses fails alone (its members say why)."""
        def send(batch: list[dict[str, Any]]) -> list[None]:
            self.client.call("core_cohort_update_cohorts", {"cohorts": batch}, write=True)
            return [None] * len(batch)
        return bisect(cohorts, send)

    def _leave(self, members: list[dict[str, int]]) -> list[None | MoodleError]:
        """One call; a member Moodle refuses (a deleted user aborts the whole call) fails alone, by bisection."""
        def send(batch: list[dict[str, int]]) -> list[None]:
            self.client.call("core_cohort_delete_cohort_members", {"members": batch}, write=True)
            return [None] * len(batch)
        return bisect(members, send) if members else []


def name_of(view: View | None) -> str | None:
    name = view.get("cohort_name") if view else None
    return str(name).strip() or None if name is not None else None


def category_of(view: View | None) -> int | None:
    value = view.get("category") if view else None
    return int(value) if value not in (None, "") else None


def _warnings_by_user(answer: Any) -> dict[str, dict[str, Any]]:
    """core_cohort_add_cohort_members' warnings about a person, by their user id: Moodle names it only in the
    message ('user id=5 not exists'; code 3, 'record already exists: cohort(id=3 id=5)', is what we want)."""
    out: dict[str, dict[str, Any]] = {}
    for warning in (answer or {}).get("warnings", []):
        message = str(warning.get("message", ""))
        found = _USER.search(message) or _MEMBER.search(message)
        if found:
            out[found.group(1)] = warning
    return out


_USER = re.compile(r"user id=(\d+) not exists")
_MEMBER = re.compile(r"cohort\(id=\d+ id=(\d+)\)")
