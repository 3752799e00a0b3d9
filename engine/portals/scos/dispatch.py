"""Queue items of portal `scos` to СЦОС calls: learner data in arrays of up to 10, answered per item;
passports, status changes and certificates one by one."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bufsync.portals.scos.client import ScosClient, ScosRejected, ScosUnavailable
from bufsync.queue.dispatcher import Delivered, Permanent, Transient

log = logging.getLogger("bufsync.scos")
PER_CALL = 10  # items per learner-data call, as the public clients send
ARRAY_CALLS = {"participation_add": "participation_add", "participation_remove": "participation_remove",
               "result": "results", "progress": "progress"}


class ScosHandler:
    """A batch handler for bufsync.queue.dispatcher.dispatch."""

    def __init__(self, client: ScosClient, partner_id: str, parallel: int = 1) -> None:
        self.client = client
        self.partner_id = partner_id
        # learner-data arrays of one batch are independent: with a round trip of tens of ms to the
        # portal, sending a few at once is what makes one dispatcher fast (httpx's pool is thread-safe)
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="scos") if parallel > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.client.close()

    def __call__(self, items: list[dict[str, Any]]) -> list[Delivered | Transient | Permanent]:
        results: dict[int, Delivered | Transient | Permanent] = {}
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
                    results[item["id"]] = self._single(operation, portal_body(item["payload"]), item["attempts"])
        sent = self._pool.map(lambda a: self._array(*a), arrays) if self._pool else (self._array(*a) for a in arrays)
        for answered in sent:
            results.update(answered)
        return [results[item["id"]] for item in items]

    def _array(self, call: str, part: list[dict[str, Any]]) -> dict[int, Any]:
        try:
            answers = getattr(self.client, call)([portal_body(item["payload"]) for item in part])
        except ScosUnavailable as exc:
            return {item["id"]: Transient(str(exc)) for item in part}
        except ScosRejected as exc:
            if len(part) == 1:
                return {part[0]["id"]: Permanent(str(exc))}
            out: dict[int, Any] = {}
            for item in part:  # one bad item must not sink the others: send them one by one
                out.update(self._array(call, [item]))
            return out
        out = {}
        for item, answer in zip(part, answers if isinstance(answers, list) else []):
            if isinstance(answer, dict) and answer.get("saved") is True:
                out[item["id"]] = Delivered(answer)
            else:
                out[item["id"]] = Permanent(f"saved: false — {answer.get('error') if isinstance(answer, dict) else answer}")
        for item in part:
            out.setdefault(item["id"], Transient("the portal answered fewer items than sent"))
        return out

    def _single(self, operation: str, payload: dict[str, Any], attempts: int) -> Delivered | Transient | Permanent:
        try:
            if operation == "course_publish":
                return self._publish(payload, attempts)
            if operation == "course_update":
                self.client.update(self.partner_id, payload)
                return Delivered({"updated": payload.get("id"), "business_version": payload.get("business_version")})
            if operation == "course_status":
                return Delivered({"status": self.client.set_status(payload["course_id"], payload["status"])})
            if operation == "certificate":
                return Delivered(self.client.certificate(payload))
        except ScosUnavailable as exc:
            return Transient(str(exc))
        except ScosRejected as exc:
            return Permanent(str(exc))
        return Permanent(f"unknown СЦОС operation '{operation}'")

    def _publish(self, passport: dict[str, Any], attempts: int) -> Delivered:
        """A publish is not resent blindly: after an attempt whose answer was lost, the portal's list is read
        first, and a course with the same external_url is taken as this one."""
        if attempts > 1:
            try:
                found = self.client.find_course(self.partner_id, passport["external_url"])
            except ScosRejected as exc:  # a portal without the list: the 409 below is the remaining guard
                log.warning("СЦОС course list unavailable (%s); publishing %s again", exc, passport["external_url"])
                found = None
            if found is not None:
                return Delivered({"course_id": found, "adopted": True})
        try:
            return Delivered({"course_id": self.client.publish(self.partner_id, passport)})
        except ScosRejected as exc:
            existing = exc.json().get("course_id") if exc.status == 409 else None
            if existing:
                return Delivered({"course_id": existing, "adopted": True})
            raise


def portal_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without bufsync's own notes (keys starting with `_`, e.g. the Moodle ids for the DBA view)."""
    return {k: v for k, v in payload.items() if not k.startswith("_")}
