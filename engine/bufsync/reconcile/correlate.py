"""Correlation: an unlinked key adopts a remote record only when nothing contradicts it."""

from __future__ import annotations

from collections.abc import Sequence

from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile import plan as p
from bufsync.reconcile.adapter import Candidate, Existing
from bufsync.reconcile.context import CHUNK, Context


def correlate(ctx: Context, mapping: Mapping, plan: p.MappingPlan) -> None:
    """Unlinked keys: adopt a remote record only when nothing contradicts it, else `disputed`, no write.

    A record is not adopted when the ledger links it to another key, when a stronger rule's field
    (the idnumber, before the login) holds another value, when another key of this plan claims it,
    or when several records fit.
    """
    creates = [s for s in plan.steps if s.action == p.CREATE]
    if not creates or not mapping.flow.correlation:
        return
    adapter = ctx.adapter_for(mapping)
    rules = mapping.flow.correlation
    for start in range(0, len(creates), CHUNK):
        chunk = creates[start:start + CHUNK]
        found = adapter.correlate([p.desired_of(s) for s in chunk], rules)
        with ctx.engine.connect() as conn:
            owners = ctx.ledger.owners(conn, mapping.name, [c.remote_id for cs in found.values() for c in cs])
        claimed: dict[int, list[p.Step]] = {}
        for step in chunk:
            candidates = found.get(step.key, [])
            if len(candidates) > 1:
                step.action = p.DISPUTED
                step.candidates = [c.remote_id for c in candidates]
                step.reason = (f"В LMS несколько записей подходят к строке «{step.key}» "
                               f"(id {', '.join(map(str, step.candidates))}); оставьте одну или задайте idnumber "
                               "вручную (disputed)")
            elif candidates:
                reason = _contradiction(step, candidates[0], owners.get(candidates[0].remote_id), rules)
                step.candidates = [candidates[0].remote_id]
                if reason:
                    step.action, step.reason = p.DISPUTED, reason
                else:
                    step.action = p.ADOPT
                    step.existing = Existing(step.key, candidates[0].remote_id, None)
                    claimed.setdefault(candidates[0].remote_id, []).append(step)
        for remote_id, steps in claimed.items():
            if len(steps) > 1:
                keys = ", ".join(f"«{s.key}»" for s in steps)
                for step in steps:
                    step.action, step.existing = p.DISPUTED, None
                    step.reason = (f"Запись LMS id {remote_id} подходит сразу к строкам {keys}; ни одна не "
                                   "привязана, чтобы не отдать чужую запись; исправьте идентификаторы (disputed)")


def _contradiction(step: p.Step, candidate: Candidate, owner: str | None,
                   rules: Sequence[Correlation]) -> str | None:
    """Why adopting this record would take over someone else's, or None when nothing contradicts it."""
    if owner is not None and owner != step.key:
        return (f"Запись LMS id {candidate.remote_id} уже связана со строкой «{owner}»; строка «{step.key}» к ней "
                f"не привязана, чтобы не перезаписать чужую запись. Проверьте {rules[candidate.rule].source} "
                "(у двух строк одинаковое значение) (disputed)")
    desired = p.desired_of(step)  # a create: planned from its row
    for index, rule in enumerate(rules[:candidate.rule]):
        have = candidate.values.get(rule.remote)
        want = desired.correlation[index]
        if have not in (None, "") and str(have) != str(want if want is not None else ""):
            by = rules[candidate.rule]
            found = desired.correlation[candidate.rule]
            return (f"Запись LMS id {candidate.remote_id} найдена по {by.remote} «{found}», "
                    f"но её {rule.remote} = «{have}», а у строки «{step.key}» — «{want or ''}»: это другая запись, она "
                    f"не привязана и не изменена. Исправьте {by.source} в 1С или {rule.remote} в LMS (disputed)")
    return None
