"""Queue items of portal `u2035` to the LRS and S3.

Each item is one statement. A submission's files go first: downloaded from Moodle with the token, hashed, put into
S3 under the configured key layout (once per content: a file already stored with the same SHA-256 is not uploaded
again, and a put whose answer was lost is found by a HEAD), then referenced by fileUrl, sha2 and length. The
statements go in POSTs of `statements_per_post`; the id was minted when the fact was queued, so a resend after a
lost answer is the same statement under the same id, which the LRS stores once. How each answer is taken:
- 200 (the ids stored; ralph lists only the new ones) and 204 (all known already): delivered;
- 409 (a different statement holds one of the ids), 400 (a bad statement, or an id twice in the batch), 413 (too
  large): the batch is split until the statement at fault stands alone; it fails with the LRS's words, the others go;
- 429: nothing of the rest is sent now; they wait their turn (Retry-After kept by the queue's backoff);
- 401/403: the credentials are refused: the dispatcher stops, no item loses an attempt;
- a lost answer or a 5xx: tried again later, the same ids.
Nothing is sent unless the connection is active with the settings it was checked with.
"""

from __future__ import annotations

import mimetypes
import posixpath
import tempfile
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from bufsync.portals.u2035.settings import U2035Settings
from bufsync.portals.u2035.statements import attachment
from bufsync.queue.dispatcher import AccessRefused, Delivered, Permanent, Result, Transient
from bufsync.state.ledger import now_utc

SOURCE_MAX = 800  # sync_u2035_files.source: indexed, within SQL Server's 1,700-byte index key (nvarchar)


class FileProblem(Exception):
    """A submitted file that cannot be referenced (deleted in Moodle, too large): its statement fails alone."""


class U2035Handler:
    """A batch handler for bufsync.queue.dispatcher.dispatch."""

    def __init__(self, settings: U2035Settings, engine: sa.Engine, tables: dict[str, sa.Table], lrs: Any, store: Any,
                 moodle: Callable[[], Any], blocked: Callable[[], str | None]) -> None:
        self.settings = settings
        self.engine = engine
        self.files_t = tables["sync_u2035_files"]
        self.statements_t = tables["sync_u2035_statements"]
        self.lrs = lrs
        self.store = store
        self._moodle = moodle      # a Moodle client, made when the first file needs one
        self._blocked = blocked    # why nothing may be sent now (the connection), or None

    def close(self) -> None:
        self.lrs.close()
        if self.store is not None:
            self.store.close()

    def __call__(self, items: list[dict[str, Any]]) -> list[Result]:
        blocked = self._blocked()
        if blocked is not None:
            return [AccessRefused(blocked) for _ in items]
        results: dict[int, Result] = {}
        ready: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for item in items:
            try:
                ready.append((item, self._statement(item)))
            except FileProblem as exc:
                results[item["id"]] = Permanent(str(exc))
            except _Refused as exc:
                return [results.get(i["id"]) or AccessRefused(str(exc)) for i in items]
            except _Later as exc:
                results[item["id"]] = Transient(str(exc), in_doubt=exc.in_doubt, sent=exc.in_doubt)
        size = self.settings.statements_per_post
        stop: Result | None = None
        for start in range(0, len(ready), size):
            part = ready[start:start + size]
            if stop is not None:
                results.update({item["id"]: stop for item, _ in part})
                continue
            outcome = self._post(part)
            results.update(outcome)
            last = list(outcome.values())
            if any(isinstance(r, AccessRefused) for r in last):
                stop = next(r for r in last if isinstance(r, AccessRefused))
            elif any(isinstance(r, Transient) and not r.sent for r in last):  # 429: the rest waits too
                stop = next(r for r in last if isinstance(r, Transient) and not r.sent)
        out = [results[item["id"]] for item in items]
        self._settle(items, out)
        return out

    def _settle(self, items: list[dict[str, Any]], results: list[Result]) -> None:
        """The statements' rows follow at once (the next run would settle them too): sent, or error with the
        LRS's words, so a DBA reading sync_u2035_statements right after a dispatch sees what happened."""
        now = now_utc()
        sent = [{"k": i["idempotency_key"], "at": now} for i, r in zip(items, results, strict=True)
                if isinstance(r, Delivered)]
        failed = [{"k": i["idempotency_key"], "why": r.error[:2000], "at": now}
                  for i, r in zip(items, results, strict=True) if isinstance(r, Permanent)]
        t = self.statements_t
        with self.engine.begin() as conn:
            if sent:
                conn.execute(t.update().where(t.c.pending_key == sa.bindparam("k"))
                             .values(state="sent", pending_key=None, last_error=None, sent_at=sa.bindparam("at"),
                                     updated_at=sa.bindparam("at")), sent)
            if failed:
                conn.execute(t.update().where(t.c.pending_key == sa.bindparam("k"))
                             .values(state="error", last_error=sa.bindparam("why"), updated_at=sa.bindparam("at")),
                             failed)

    # -- statements ------------------------------------------------------------------------------------------------
    def _statement(self, item: dict[str, Any]) -> dict[str, Any]:
        payload = item["payload"]
        statement = dict(payload["statement"])
        files = payload.get("files") or []
        if files:
            usage = payload.get("usage_type") or self.settings.profile.usage_type
            language = payload.get("language") or self.settings.profile.language
            statement["attachments"] = [attachment(f, self._stored(f, payload), usage, language) for f in files]
        return statement

    def _post(self, part: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[int, Result]:
        from bufsync.portals.u2035.lrs import LrsFailed, LrsRefused, LrsUnavailable
        try:
            answer = self.lrs.post([s for _, s in part])
        except LrsRefused as exc:
            return {item["id"]: AccessRefused(
                f"LRS Университета 2035 не принял ключ и секрет (portals.u2035.key, portals.u2035.secret): {exc}; "
                "ни одно высказывание не потеряло попытку: проверьте их и выполните dispatch снова")
                for item, _ in part}
        except LrsUnavailable as exc:
            return {item["id"]: Transient(f"LRS недоступен: {exc}", in_doubt=exc.sent, sent=exc.sent)
                    for item, _ in part}
        except LrsFailed as exc:  # the address leads to no LRS (404, 405): a setting, not the statements
            return {item["id"]: AccessRefused(
                f"portals.u2035.lrs_url не ведёт к LRS: {exc}; ни одно высказывание не потеряло попытку") for item, _ in
                part}
        if answer.status in (200, 204):
            return {item["id"]: Delivered({"statement_id": s["id"], "status": answer.status}) for item, s in part}
        if answer.status == 429:
            wait = f" (Retry-After {answer.retry_after:g} с)" if answer.retry_after else ""
            return {item["id"]: Transient(f"LRS ограничил частоту запросов: HTTP 429{wait}", sent=False)
                    for item, _ in part}
        if 400 <= answer.status < 500:  # 400, 409, 413, ...: the statement at fault fails alone
            if len(part) == 1:
                return {part[0][0]["id"]: Permanent(_rejected(answer))}
            half = len(part) // 2
            return self._post(part[:half]) | self._post(part[half:])
        return {item["id"]: Transient(f"LRS ответил HTTP {answer.status}: {answer.message or answer.body}",
                                      in_doubt=True) for item, _ in part}

    # -- files -----------------------------------------------------------------------------------------------------
    def _stored(self, file: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        """The file's row in sync_u2035_files: found by where it came from, else downloaded, hashed and looked up by
        content, else put into S3."""
        source = _source(file)
        t = self.files_t
        here = self.store.url("")  # rows of a store this connection no longer uses (reconnected elsewhere) are not
        with self.engine.connect() as conn:  # the file's: it is stored again here
            row = conn.execute(sa.select(t).where(t.c.source == source)).first()
        if row is not None and str(row.url).startswith(here):
            return dict(row._mapping)
        limit = self.settings.max_file_mb * 1024 * 1024
        if int(file.get("filesize") or 0) > limit:
            raise FileProblem(f"файл «{file.get('filename')}» ({int(file['filesize']) // 1024 // 1024} МБ) больше "
                              f"portals.u2035.max_file_mb ({self.settings.max_file_mb} МБ): высказывание не отправлено")
        with tempfile.TemporaryFile() as sink:
            length, sha = self._download(file, sink)
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t).where(t.c.sha256 == sha)).first()
            if row is not None and str(row.url).startswith(here):
                return dict(row._mapping)
            stale = row is not None
            content_type = str(file.get("mimetype") or mimetypes.guess_type(str(file.get("filename")))[0]
                               or "application/octet-stream")
            key = self._key(file, payload, sha)
            self._put(key, sink, content_type, sha, length)
        values = {"sha256": sha, "length": length, "object_key": key, "url": self.store.url(key),
                  "content_type": content_type, "source": source, "uploaded_at": now_utc()}
        try:
            with self.engine.begin() as conn:
                if stale:
                    conn.execute(t.update().where(t.c.sha256 == sha).values(values))
                else:
                    conn.execute(t.insert().values(values))
        except sa.exc.IntegrityError:  # another dispatcher stored the same content meanwhile: its row is the one
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t).where(t.c.sha256 == sha)).first()
            if row is not None:
                return dict(row._mapping)
            raise
        return values

    def _download(self, file: dict[str, Any], sink: Any) -> tuple[int, str]:
        from bufsync.adapters.moodle.errors import MoodleError, MoodleUnavailable
        try:
            length, sha = self._moodle().download(file["fileurl"], sink)
        except MoodleUnavailable as exc:
            raise _Later(f"Moodle недоступен, файл «{file.get('filename')}» не скачан: {exc}", False) from None
        except MoodleError as exc:
            if exc.is_unavailable:  # closed for maintenance, a failed read of its database: later, not dead
                raise _Later(f"Moodle недоступен, файл «{file.get('filename')}» не скачан: {exc.message} "
                             f"({exc.code})", False) from None
            if exc.is_config_error:
                # the token or the service (no «Can download files»): every file alike, no statement's fault
                raise _Refused(f"Moodle не отдал файл ответа: {exc.fix()}; ни одно высказывание не потеряло "
                               "попытку: исправьте и выполните dispatch снова") from None
            raise FileProblem(f"файл «{file.get('filename')}» не скачан из Moodle: {exc.message} ({exc.code}); "
                              "высказывание не отправлено") from None
        except ValueError as exc:  # a file of another site (moodle.url changed since it was queued): no token there
            raise FileProblem(f"файл «{file.get('filename')}» не с сайта Moodle из настроек (moodle.url), токен туда "
                              f"не отправляется: {exc}; высказывание не отправлено") from None
        sink.seek(0)
        return int(length), str(sha)

    def _key(self, file: dict[str, Any], payload: dict[str, Any], sha: str) -> str:
        name = str(file.get("filename") or "file")
        ext = posixpath.splitext(name)[1].lower()
        return self.settings.s3_key_layout.format(project=self.settings.project, unti_id=payload.get("unti_id", ""),
                                                  course_id=payload.get("course_id", ""), sha256=sha, ext=ext,
                                                  filename=name).lstrip("/")

    def _put(self, key: str, sink: Any, content_type: str, sha: str, length: int) -> None:
        from bufsync.portals.u2035.storage import S3Failed
        try:
            held = self.store.head(key)
            if held is not None and int(held.get("length") or -1) == length and held.get("sha256") in (None, sha):
                return  # a put whose answer was lost: the object is there
            sink.seek(0)
            self.store.put(key, sink, content_type=content_type, sha256_hex=sha, length=length)
        except S3Failed as exc:
            if exc.transient:
                raise _Later(f"S3 недоступно: {exc}", True) from None
            raise _Refused(f"хранилище S3 Университета 2035 отказало ({exc}): проверьте portals.u2035.s3_endpoint, "
                           "s3_bucket, s3_access_key, s3_secret_key; ни одно высказывание не потеряло попытку"
                           ) from None


class _Later(Exception):
    def __init__(self, text: str, in_doubt: bool) -> None:
        super().__init__(text)
        self.in_doubt = in_doubt


class _Refused(Exception):
    pass


def _source(file: dict[str, Any]) -> str:
    """Where a file came from in Moodle, without the token, after its modification time and size (a replaced file
    with the same name is another file): a path too long for the column loses its tail, never those."""
    parts = urlsplit(str(file.get("fileurl") or ""))
    return f"{file.get('timemodified') or ''}:{file.get('filesize') or ''}@{unquote(parts.path)}"[:SOURCE_MAX]


def _rejected(answer: Any) -> str:
    reason = {409: "LRS хранит другое высказывание с этим id", 413: "высказывание слишком велико для LRS",
              400: "LRS отверг высказывание"}.get(answer.status, "LRS отверг высказывание")
    return f"{reason}: {answer.message or answer.body} (HTTP {answer.status})"
