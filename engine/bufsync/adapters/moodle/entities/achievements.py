"""Achievements (the 1C portfolio) as what core Moodle 4.5 can hold: it has no web service to award a badge.

One Moodle record per person (the mapping's `group_by` is the person's column), sent whole whenever one of
their rows changes:
- a membership in the cohort of every kind they hold an active achievement of (`cohort`, with the mapping's
  `cohort_prefix`: ach-<kind>), so a site awards a core badge by the cohort criterion; the cohorts are kept as
  the cohort_member entity keeps them (created, renamed, emptied: bufsync's own prefix only);
- when `moodle.achievements.profile_field` names a custom profile field, the list of their active achievements
  in it, one line each, by date then title (`title`, `achieved_on`, `level`, `document`, `points`); no active
  achievement left: the field is emptied.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from bufsync.adapters.moodle import messages
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities import register
from bufsync.adapters.moodle.entities.cohorts import Change, CohortMemberAdapter, View, category_of, membership, name_of
from bufsync.errors import ConfigError, Problem
from bufsync.mapping.loader import MappingSet
from bufsync.mapping.model import Mapping
from bufsync.reconcile.adapter import Existing, Member, Outcome
from bufsync.reconcile.records import Desired

# core_user_update_users for a person deleted in Moodle: nothing left to hold an emptied list
USER_GONE = ("invaliduserid", "usernotexists")


@register("achievement")
class AchievementAdapter(CohortMemberAdapter):
    def __init__(self, client: MoodleClient, mapping: Mapping, settings: Any = None) -> None:
        super().__init__(client, mapping, settings)
        self.field: str | None = getattr(getattr(settings, "achievements", None), "profile_field", None)
        person = mapping.flow.fields.get("userid")
        if person is None or person.source is None or mapping.flow.group_by != [person.source]:
            # a list per (person, kind) would overwrite the person's one field with each kind's part of it
            raise ConfigError(Problem(None, f"mapping {mapping.name}: sync.group_by",
                                      "the achievement entity keeps one record per person: expected group_by to be "
                                      "the column of the `userid` field (a lookup of the people's mapping), "
                                      f"found {mapping.flow.group_by}"))

    @classmethod
    def profile_fields(cls, mapping: Mapping, mappings: MappingSet, metadata: sa.MetaData,
                       settings: Any) -> dict[str, sa.Select[Any]]:
        """For `bufsync check` (no Web Service lists profile fields; it reads people back): the list's field, and
        the Moodle ids of people whose list Moodle should hold (an active achievement applied: ok, or a warning that
        Moodle dropped the list)."""
        field = getattr(getattr(settings, "achievements", None), "profile_field", None)
        person = mapping.flow.fields.get("userid")
        if field is None or person is None or person.lookup is None or person.source is None:
            return {}
        people = mappings[person.lookup]
        remote = people.table.writeback.remote_id if people.table.writeback else None
        if remote is None or len(people.flow.key) != 1:
            return {}
        rows, users = metadata.tables[mapping.table.name], metadata.tables[people.table.name]
        query = (sa.select(users.c[remote]).distinct()
                 .select_from(rows.join(users, rows.c[person.source] == users.c[people.flow.key[0]]))
                 .where(users.c[remote].is_not(None)))
        if mapping.flow.status is not None:
            query = query.where(rows.c[mapping.flow.status.column].in_(mapping.flow.status.active))
        if mapping.table.writeback is not None and mapping.table.writeback.status:
            query = query.where(rows.c[mapping.table.writeback.status].in_(["ok", "warning"]))
        return {field: query}

    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        if desired.active and desired.payload.get("cohort") in (None, ""):
            column = self.mapping.flow.fields["cohort"].source or "cohort"
            return messages.with_code(f"Пустой код вида достижения ({column}): не понятно, в какую когорту "
                                      "включить человека; заполните его в 1С", "missingcohort")
        return super().prevalidate(desired, existing)

    def apply_groups(self, groups: list[list[Member]]) -> list[Outcome]:
        """Each person's memberships and list, as their rows now say; one outcome for all their rows."""
        changes: list[Change] = []
        owners: list[int] = []
        for index, members in enumerate(groups):
            for change in _cohort_changes(members):
                changes.append(change)
                owners.append(index)
        outcomes: list[Outcome] = [Outcome(True) for _ in groups]
        for index, outcome in zip(owners, self.apply_changes(changes) if changes else [], strict=True):
            if not outcome.ok and outcomes[index].ok:
                outcomes[index] = outcome
        if self.field is not None:
            self._write_lists(groups, outcomes)
        return outcomes

    def _write_lists(self, groups: list[list[Member]], outcomes: list[Outcome]) -> None:
        """The profile field of every person touched, in batched core_user_update_users calls; Moodle silently
        skips a field it lacks, which the client finds by reading the people back (a warning, not an error)."""
        assert self.field is not None
        todo: list[tuple[int, str]] = []
        records: list[dict[str, Any]] = []
        for index, members in enumerate(groups):
            userid = _person(members)
            if userid is None:
                continue
            text = achievement_list(m.after for m in members)
            todo.append((index, text))
            records.append({"id": userid, "customfields": [{"type": self.field, "value": text}]})
        for (index, text), result in zip(todo, self.client.update_users(records) if records else [], strict=True):
            if not result.ok:
                if result.code in USER_GONE and not text:
                    continue  # deleted in Moodle: an emptied list is what it holds
                if outcomes[index].ok:
                    outcomes[index] = Outcome(False, error="Список достижений не записан в поле профиля Moodle "
                                              f"«{self.field}»: {result.error}", code=result.code)
            elif result.warning and outcomes[index].ok and not outcomes[index].warning:
                outcomes[index] = Outcome(True, warning=messages.with_code(
                    f"Когорты по видам достижений в Moodle обновлены, но список достижений Moodle не сохранил: поля "
                    f"профиля «{self.field}» в Moodle нет, а неизвестные поля Moodle пропускает молча. Создайте поле "
                    "с этим кратким именем (Администрирование > Пользователи > Учётные записи > Поля профиля "
                    "пользователя; тип «Текстовая область») и запустите bufsync run --full", "profilefieldmissing"))

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        """--full: rows whose membership Moodle lost, and rows whose person's field is not the list their rows and
        the other rows of their group (`Existing.peers`, by the ledger) make: edited by hand, created after the
        rows were applied, or named in the settings since."""
        out = super().drifted(items)
        if self.field is None:
            return out
        wanted: dict[int, tuple[str, list[str]]] = {}  # userid -> (the list, the rows checked)
        for desired, existing in items:
            view = self._view(desired)
            if view.get("userid") in (None, ""):
                continue
            text, keys = wanted.setdefault(int(view["userid"]), (achievement_list([view, *existing.peers]), []))
            keys.append(desired.key)
        if not wanted:
            return out
        held = {int(user["id"]): next((str(c.get("value") or "") for c in user.get("customfields") or ()
                                       if c.get("shortname") == self.field), "")
                for user in self.client.get_users_by_field("id", sorted(wanted))}
        for userid, (text, keys) in wanted.items():
            if held.get(userid, "").replace("\r\n", "\n") != text:
                out.update(keys)
        return out


def _cohort_changes(members: list[Member]) -> list[Change]:
    """A person's memberships from their rows: every kind an active row wants is joined (a no-op in Moodle for a
    member, so a repair or a renamed kind goes through), a kind no active row wants any more is left."""
    before: dict[tuple[str, int], View] = {}
    after: dict[tuple[str, int], View] = {}
    for member in members:
        held, wanted = membership(member.before), membership(member.after)
        if held is not None:
            before.setdefault(held, member.before or {})
        if wanted is not None:
            after.setdefault(wanted, member.after or {})
    joins = [Change(None, key, name_of(view), category_of(view)) for key, view in after.items()]
    return joins + [Change(key, None) for key in before if key not in after]


def _person(members: list[Member]) -> int | None:
    """The person's Moodle id: as the rows now resolve it, else as it was applied (all their rows removed)."""
    for view in [m.after for m in members] + [m.before for m in members]:
        if view and view.get("userid") not in (None, ""):
            return int(view["userid"])
    return None


def achievement_list(views: Iterable[View | None]) -> str:
    """The text of a person's field: their active achievements, one line each, by date (undated last), then title,
    then the line itself (so the order never depends on which row came first)."""
    lines = [(_day(v.get("achieved_on")) or "\uffff", _text(v.get("title")), achievement_line(v))
             for v in views if v and v.get("@active", True)]
    return "\n".join(line for *_, line in sorted(lines))


def achievement_line(view: View) -> str:
    """One achievement: «2026-05-12 — Победитель олимпиады (региональный уровень, 10 баллов), диплом №123»."""
    text = _text(view.get("title")) or _text(view.get("cohort_name")) or _text(view.get("cohort"))
    details = []
    level = _text(view.get("level"))
    if level:
        details.append(level if "уровень" in level.lower() else f"{level} уровень")
    points = _points(view.get("points"))
    if points:
        details.append(points)
    if details:
        text += f" ({', '.join(details)})"
    document = _text(view.get("document"))
    if document:
        text += f", {document}"
    day = _day(view.get("achieved_on"))
    return f"{day} — {text}" if day else text


def _text(value: Any) -> str:
    """One line of plain text: a line break inside a title would split the achievement in two."""
    return " ".join(str(value).split()) if value is not None else ""


def _day(value: Any) -> str:
    """ISO date, whether the row gives a date or the ledger gives back its text."""
    return str(value)[:10] if value not in (None, "") else ""


def _points(value: Any) -> str:
    """«10 баллов», «1 балл», «2,5 балла»: Russian number agreement, a decimal comma, no trailing zeros."""
    if value in (None, ""):
        return ""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return _text(value)
    if number == number.to_integral_value():
        whole = int(number)
        last, tens = abs(whole) % 10, abs(whole) % 100
        word = "балл" if last == 1 and tens != 11 else "балла" if 2 <= last <= 4 and not 12 <= tens <= 14 else "баллов"
        return f"{whole} {word}"
    return f"{format(number.normalize(), 'f').replace('.', ',')} балла"
