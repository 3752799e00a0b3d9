"""Queue items of portal `scos` to СЦОС calls: learner data in arrays of up to 10, answered per item;
passports, status changes and certificates one by one.

An item in doubt (its previous send may have reached the portal: a dispatcher died holding it, or the
answer was lost) is handled per operation, as docs/portals/scos.md says:
- course_publish: the partner's course list is searched for its external_url first (one list per batch);
- course_update: the course is read back; a portal already holding this business_version is enough;
- course_status, participation_add/remove, result, progress: sent again, the portal takes them twice
  without harm (a status is set, not toggled; one participation is kept; a result is an upsert per
  checkpoint; progress: the last value wins);
- certificate: the portal cannot be asked and a second send may issue a second certificate, so the
  item is not sent again: it goes dead with the reason, for an operator to check and retry or cancel.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bufsync.portals.scos.client import ScosClient, ScosKeyRefused, ScosRejected, ScosUnavailable
from bufsync.queue.dispatcher import AccessRefused, Delivered, Permanent, Result, Transient

log = logging.getLogger("bufsync.scos")
PER_CALL = 10  # items per learner-data call, as the public clients send
ARRAY_CALLS = {"participation_add": "participation_add", "participation_remove": "participation_remove",
               "result": "results", "progress": "progress"}
NOT_RESENT = ("not sent again: a dispatcher died while sending this certificate (or the portal's answer was lost), "
              "and the portal can neither be asked whether it was issued nor be trusted to ignore a second one; "
              "check the learner on the portal, then `bufsync queue retry {id}` to send it or "
              "`bufsync queue cancel {id}`")


def key_refused(exc: ScosRejected) -> str:
    """The operator's message for a refused key; the key itself is never part of it."""
    return (f"the portal refused the key BUFSYNC_SCOS_KEY (scos.key): HTTP {exc.status} {exc.body[:200]}; "
            "no item was sent or used an attempt: fix the key, then dispatch again")


class ScosHandler:
    """A batch handler for bufsync.queue.dispatcher.dispatch."""

    def __init__(self, client: ScosClient, partner_id: str, parallel: int = 1) -> None:
        self.client = client
        self.partner_id = partner_id
        # learner-data arrays of one batch are independent: with a round trip of tens of ms to the
        # portal, sending a few at once is what makes one dispatcher fast (httpx's pool is thread-safe)
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="scos") if parallel > 1 else None
        self._refused: AccessRefused | None = None  # once the key is refused, nothing more is tried
        self._listing: dict[str, str] | None = None  # the partner's courses, read once per batch when needed

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.client.close()

    def __call__(self, items: list[dict[str, Any]]) -> list[Result]:
        self._refused, self._listing = None, None
        results: dict[int, Result] = {}
        by_operation: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            by_operation.setdefault(item["operation"], []).append(item)
        arrays: list[tuple[str, list[dict[str, Any]]]] = []
        for operation, group in by_operation.items():
            if operation in ARRAY_CALLS:
                arrays += [(ARRAY_CALLS[operation], group[start:start + PER_CALL])
                           for start in range(0, len(group), PER_CALL)]
            else:
                for item in group:
                    results[item["id"]] = self._refused or self._single(item)
        if self._refused is not None:
            arrays = []
            results.update({item["id"]: self._refused for group in by_operation.values() for item in group
                            if item["id"] not in results})
        sent = self._pool.map(lambda a: self._array(*a), arrays) if self._pool else (self._array(*a) for a in arrays)
        for answered in sent:
            results.update(answered)
        return [results[item["id"]] for item in items]

    def _array(self, call: str, part: list[dict[str, Any]]) -> dict[int, Result]:
        if self._refused is not None:
            return {item["id"]: self._refused for item in part}
        try:
            answers = getattr(self.client, call)([portal_body(item["payload"]) for item in part])
        except ScosUnavailable as exc:
            return {item["id"]: Transient(str(exc), in_doubt=exc.maybe_sent) for item in part}
        except ScosKeyRefused as exc:
            self._refused = AccessRefused(key_refused(exc))
            return {item["id"]: self._refused for item in part}
        except ScosRejected as exc:
            if len(part) == 1:
                return {part[0]["id"]: Permanent(str(exc))}
            out: dict[int, Result] = {}
            for item in part:  # one bad item must not sink the others: send them one by one
                out.update(self._array(call, [item]))
            return out
        out = {}
        for item, answer in zip(part, answers if isinstance(answers, list) else [], strict=False):
            if isinstance(answer, dict) and answer.get("saved") is True:
                out[item["id"]] = Delivered(answer)
            else:
                reason = answer.get("error") if isinstance(answer, dict) else answer
                doubt = (" (sent again after its first send's answer was lost: the portal may hold it from then)"
                         if item.get("in_doubt") else "")
                out[item["id"]] = Permanent(f"saved: false — {reason}{doubt}")
        for item in part:
            out.setdefault(item["id"], Transient("the portal answered fewer items than sent", in_doubt=True))
        return out

    def _single(self, item: dict[str, Any]) -> Result:
        operation, payload, doubt = item["operation"], portal_body(item["payload"]), bool(item.get("in_doubt"))
        try:
            if operation == "course_publish":
                return self._publish(payload, doubt or item["attempts"] > 1)
            if operation == "course_update":
                if doubt and self._holds_version(payload):
                    return Delivered({"updated": payload.get("id"), "business_version": payload.get("business_version"),
                                      "confirmed": True}, sent=False)
                self.client.update(self.partner_id, payload)
                return Delivered({"updated": payload.get("id"), "business_version": payload.get("business_version")})
            if operation == "course_status":  # idempotent: the status is set, not toggled
                return Delivered({"status": self.client.set_status(payload["course_id"], payload["status"])})
            if operation == "certificate":
                if doubt:
                    return Permanent(NOT_RESENT.format(id=item["id"]), sent=False)
                return Delivered(self.client.certificate(payload))
        except ScosUnavailable as exc:
            return Transient(str(exc), in_doubt=exc.maybe_sent)
        except ScosKeyRefused as exc:
            self._refused = AccessRefused(key_refused(exc))
            return self._refused
        except ScosRejected as exc:
            return Permanent(str(exc))
        return Permanent(f"unknown СЦОС operation '{operation}'")

    def _holds_version(self, passport: dict[str, Any]) -> bool:
        """Whether the portal already holds this passport version (an update whose answer was lost)."""
        try:
            held = self.client.course(str(passport["id"])).get("business_version")
            return held is not None and int(held) >= int(passport["business_version"])
        except ScosKeyRefused:
            raise
        except (ScosRejected, ScosUnavailable, KeyError, TypeError, ValueError) as exc:
            # the update is a full passport: sending it again is harmless, so an unreadable course is no stop
            log.warning("СЦОС course %s could not be read back (%s); sending the update again", passport.get("id"), exc)
            return False

    def _publish(self, passport: dict[str, Any], unsure: bool) -> Result:
        """A publish is not resent blindly: after an attempt that may have reached the portal, the portal's
        list is read first (once per batch), and a course with the same external_url is taken as this one."""
        if unsure:
            try:
                if self._listing is None:
                    self._listing = self.client.courses_by_url(self.partner_id)
                found = self._listing.get(passport["external_url"])
            except ScosKeyRefused:
                raise
            except ScosRejected as exc:  # a portal without the list: the 409 below is the remaining guard
                log.warning("СЦОС course list unavailable (%s); publishing %s again", exc, passport["external_url"])
                found = None
            except ScosUnavailable as exc:  # nothing was sent: ask again on the next try
                return Transient(f"the course list, read before publishing again: {exc}", sent=False)
            if found is not None:
                return Delivered({"course_id": found, "adopted": True}, sent=False)
        try:
            course_id = self.client.publish(self.partner_id, passport)
        except ScosKeyRefused:
            raise
        except ScosRejected as exc:
            existing = exc.json().get("course_id") if exc.status == 409 else None
            if existing:
                return Delivered({"course_id": existing, "adopted": True})
            raise
        if self._listing is not None:
            self._listing[passport["external_url"]] = course_id
        return Delivered({"course_id": course_id})


def portal_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without bufsync's own notes (keys starting with `_`, e.g. the Moodle ids for the DBA view)."""
    return {k: v for k, v in payload.items() if not k.startswith("_")}
