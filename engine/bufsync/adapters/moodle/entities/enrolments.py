"""Manual enrolments: always the full state (Moodle resets what a re-enrol omits).

A row may also name a course group (`groupid`: a learning process's group): the person is its member while
the row is active, and leaves it when the row goes or is inactive. Memberships follow the enrolment (Moodle
takes only enrolled users as members); the enrolment itself is only ever suspended by them."""

from __future__ import annotations

import time
from typing import Any

from bufsync.adapters.moodle import messages
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities import register
from bufsync.adapters.moodle.errors import GONE
from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile.adapter import Candidate, Existing, Member, Outcome
from bufsync.reconcile.records import Desired

# Moodle counts an enrolment active (onlyactive) from timestart to timeend, with `now` rounded to 100 s
_CLOCK_SLACK = 300


def _current(view: dict[str, Any], now: int) -> bool:
    """Whether a row's dates hold now, so its enrolment must be active in Moodle. An enrolment not started yet
    or already over is not active there (nor is it drift); the enrolment's dates are the widest of its rows',
    so a row current now makes its enrolment current too."""
    start, end = int(view.get("timestart") or 0), int(view.get("timeend") or 0)
    return start < now - _CLOCK_SLACK and (end == 0 or end > now + _CLOCK_SLACK)


def _in_groups(views: list[dict[str, Any] | None]) -> set[tuple[int, int]]:
    """(course group, person) of the active rows that name a group."""
    return {(int(v["groupid"]), int(v["userid"])) for v in views
            if v and v.get("@active", True) and v.get("groupid") and v.get("userid")}


# Moodle's standard role ids; a site with other ids sets moodle.roles in the config
DEFAULT_ROLES = {"manager": 1, "coursecreator": 2, "editingteacher": 3, "teacher": 4, "student": 5}


@register("enrolment")
class EnrolmentAdapter:
    def __init__(self, client: MoodleClient, mapping: Mapping, settings: Any = None) -> None:
        self.client = client
        self.mapping = mapping
        self.roles = dict(getattr(settings, "roles", None) or DEFAULT_ROLES)
        # --full: per course, who Moodle has enrolled (userid -> role shortnames) and who actively, read once
        # per run and dropped when this adapter writes to the course (a later chunk then reads it afresh)
        self._enrolled: dict[int, tuple[dict[int, set[str]], set[int]]] = {}
        self._members: dict[int, set[int]] = {}  # --full: a course group's members, read once a run

    def _wrote(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            if item.get("courseid") is not None:
                self._enrolled.pop(int(item["courseid"]), None)
            if item.get("groupid") is not None:
                self._members.pop(int(item["groupid"]), None)

    def _course(self, courseid: int) -> tuple[dict[int, set[str]], set[int]]:
        if courseid not in self._enrolled:
            self._enrolled[courseid] = self._read_course(courseid)
        return self._enrolled[courseid]

    def _read_course(self, courseid: int) -> tuple[dict[int, set[str]], set[int]]:
        everyone = {int(u["id"]): {r["shortname"] for r in u.get("roles", [])}
                    for u in self.client.get_enrolled_users(courseid, userfields="id,roles")}
        active = {int(u["id"]) for u in self.client.get_enrolled_users(courseid, onlyactive=True, userfields="id")}
        return everyone, active

    def _state(self, view: dict[str, Any], active: bool) -> dict[str, Any] | str:
        role = view.get("role")
        roleid = self.roles.get(str(role)) if role is not None else None
        if roleid is None:
            return messages.with_code(f"Роль «{role}» неизвестна; известны: {', '.join(sorted(self.roles))} "
                                      "(настройка moodle.roles)", "unknownrole")
        return {"roleid": roleid, "userid": view["userid"], "courseid": view["courseid"],
                "timestart": view.get("timestart") or 0, "timeend": view.get("timeend") or 0, "suspend": not active}

    def _view(self, desired: Desired) -> dict[str, Any]:
        view = dict(desired.payload)
        view.update({name: desired.resolved.get(name) for name in desired.lookups})
        return view

    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        view = self._view(desired)
        state = self._state(view, desired.active)
        if isinstance(state, str):
            return state
        if state["timestart"] and state["timeend"] and state["timeend"] < state["timestart"]:
            return messages.with_code("Окончание доступа к курсу (time_end) раньше начала (time_start); исправьте "
                                      "даты или оставьте time_end пустым", "timeendbeforestart")
        return None

    def _enrol(self, states: list[dict[str, Any] | str]) -> list[Outcome]:
        sendable = [s for s in states if isinstance(s, dict)]
        self._wrote(sendable)
        results = iter(self.client.enrol(sendable)) if sendable else iter(())
        out = []
        for state in states:
            if isinstance(state, str):
                out.append(Outcome(False, None, state, "unknownrole"))
            else:
                out.append(next(results))
        return out

    def create(self, items: list[Desired]) -> list[Outcome]:
        return self._enrol([self._state(self._view(d), d.active) for d in items])

    def update(self, items: list[tuple[Desired, Existing]]) -> list[Outcome]:
        return self._enrol([self._state(self._view(d), d.active) for d, _ in items])

    def suspend(self, items: list[Existing]) -> list[Outcome]:
        states: list[dict[str, Any] | str] = []
        for existing in items:
            view = existing.applied or {}
            states.append(self._state(view, False) if view.get("userid") and view.get("courseid")
                          else "Нет сведений о применённой записи на курс; приостановите её в Moodle (noledger)")
        return self._enrol(states)

    def delete(self, items: list[Existing]) -> list[Outcome]:
        pairs = [{"userid": (e.applied or {}).get("userid"), "courseid": (e.applied or {}).get("courseid")}
                 for e in items]
        ready = [p for p in pairs if p["userid"] and p["courseid"]]
        self._wrote(ready)
        results = iter(self.client.unenrol(ready)) if ready else iter(())
        return [next(results) if p["userid"] and p["courseid"]
                else Outcome(False, None, "Нет сведений о применённой записи на курс (noledger)", "noledger")
                for p in pairs]

    def correlate(self, items: list[Desired], rules: list[Correlation]) -> dict[str, list[Candidate]]:
        return {}  # enrolling is an upsert: nothing to adopt

    def find(self, values: list[Any]) -> dict[Any, int]:
        return {}

    def _target(self, views: list[dict[str, Any]]) -> dict[str, Any] | None:
        """One Moodle enrolment from its rows: the active rows' roles and widest dates; with no active row,
        suspended with the roles of all its (suspended) rows, so a row coming back finds its role there.
        None: no row at all (nothing to hold)."""
        known = [v for v in views if self.roles.get(str(v.get("role"))) is not None and v.get("userid")
                 and v.get("courseid")]
        if not known:
            return None
        active = [v for v in known if v.get("@active", True)]
        chosen = active or known
        starts = [int(v.get("timestart") or 0) for v in chosen]
        ends = [int(v.get("timeend") or 0) for v in chosen]
        return {"userid": int(chosen[0]["userid"]), "courseid": int(chosen[0]["courseid"]),
                "roles": sorted({self.roles[str(v["role"])] for v in chosen}),
                "timestart": 0 if 0 in starts else min(starts), "timeend": 0 if 0 in ends else max(ends),
                "suspend": not active}

    def apply_groups(self, groups: list[list[Member]]) -> list[Outcome]:
        """Per person and course: enrol with every wanted role (full state), then unassign the roles no row
        wants any more; unenrol only when no row is left at all."""
        enrols: list[tuple[int, dict[str, Any]]] = []
        unassigns: list[tuple[int, dict[str, Any]]] = []
        unenrols: list[tuple[int, dict[str, Any]]] = []
        for index, members in enumerate(groups):
            after = self._target([m.after for m in members if m.after is not None])
            before = self._target([m.before for m in members if m.before is not None])
            if after is None:
                if before is not None:
                    unenrols.append((index, {"userid": before["userid"], "courseid": before["courseid"]}))
                continue
            for roleid in after["roles"]:
                enrols.append((index, {"roleid": roleid, "userid": after["userid"], "courseid": after["courseid"],
                                       "timestart": after["timestart"], "timeend": after["timeend"],
                                       "suspend": after["suspend"]}))
            if before is not None and (before["userid"], before["courseid"]) == (after["userid"], after["courseid"]):
                for roleid in sorted(set(before["roles"]) - set(after["roles"])):
                    unassigns.append((index, {"roleid": roleid, "userid": after["userid"],
                                              "courseid": after["courseid"]}))
        joins, leaves = self._memberships(groups)
        outcomes = [Outcome(True) for _ in groups]
        steps: list[tuple[list[tuple[int, dict[str, Any]]], Any]] = [
            (enrols, self.client.enrol), (unassigns, self.client.unassign_roles), (unenrols, self.client.unenrol)]
        if joins or leaves:  # after the enrolments: Moodle takes only enrolled users as group members
            steps += [(joins, self.client.add_group_members), (leaves, self._leave_groups)]
        for calls, send in steps:
            sendable = [(i, item) for i, item in calls if outcomes[i].ok]  # a group that failed goes no further
            self._wrote([item for _, item in sendable])
            answers = send([item for _, item in sendable]) if sendable else []
            for (index, _), result in zip(sendable, answers, strict=False):
                if not result.ok and outcomes[index].ok:
                    outcomes[index] = result
        return outcomes

    @staticmethod
    def _memberships(groups: list[list[Member]]) -> tuple[list[tuple[int, dict[str, Any]]],
                                                        list[tuple[int, dict[str, Any]]]]:
        """Course-group memberships to add and to remove, per group: those of its active rows after, against
        before (a repair has no before: every membership is added again; adding a member is a no-op)."""
        joins: list[tuple[int, dict[str, Any]]] = []
        leaves: list[tuple[int, dict[str, Any]]] = []
        for index, members in enumerate(groups):
            after = _in_groups([m.after for m in members])
            before = _in_groups([m.before for m in members])
            joins += [(index, {"groupid": g, "userid": u}) for g, u in sorted(after - before)]
            leaves += [(index, {"groupid": g, "userid": u}) for g, u in sorted(before - after)]
        return joins, leaves

    def _leave_groups(self, items: list[dict[str, Any]]) -> list[Outcome]:
        """A membership whose group or person Moodle no longer has is gone already: done, not an error."""
        return [Outcome(True) if not o.ok and o.code in GONE else o for o in self.client.delete_group_members(items)]

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        """Per course: who Moodle has enrolled (all / only active) against what was applied. Each course is read
        once per run (two calls), not once per chunk: --full costs about one read of Moodle."""
        by_course: dict[int, list[tuple[Desired, dict[str, Any]]]] = {}
        for desired, _ in items:
            view = self._view(desired)
            by_course.setdefault(int(view["courseid"]), []).append((desired, view))
        out = set()
        now = int(time.time())
        unread = [c for c in by_course if c not in self._enrolled]
        self._enrolled.update(zip(unread, self.client.parallel(unread, self._read_course), strict=True))
        groupids = sorted({int(v["groupid"]) for group in by_course.values() for d, v in group
                           if d.active and v.get("groupid")} - set(self._members))
        if groupids:
            self._members.update({int(g["groupid"]): {int(u) for u in g["userids"]}
                                  for g in self.client.get_group_members(groupids)})
        peers = {d.key: e.peers for d, e in items}
        for courseid, group in by_course.items():
            everyone, active = self._course(courseid)
            for desired, view in group:
                userid = int(view["userid"])
                role = str(view.get("role"))
                if desired.active:  # an active row: enrolled with its role, and active while its dates say so
                    if role not in everyone.get(userid, set()) or (userid not in active and _current(view, now)):
                        out.add(desired.key)
                    elif view.get("groupid") and userid not in self._members.get(int(view["groupid"]), set()):
                        out.add(desired.key)  # taken out of its course group by hand
                elif userid in active and role in everyone[userid] and not any(
                        p.get("@active", True) and str(p.get("role")) == role for p in peers[desired.key]):
                    # an inactive row of an active enrolment (another row holds it): its role must be gone,
                    # unless another row (a learning process's, a subscription's) asks for that role too;
                    # of a suspended enrolment, it may keep it
                    out.add(desired.key)
                elif userid not in everyone:  # unenrolled by hand: the suspended enrolment is put back
                    out.add(desired.key)
        return out
