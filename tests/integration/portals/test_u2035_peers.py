"""The Университет 2035 clients against real peers on loopback: LrsClient against ralph-malph 5.1 (an xAPI LRS,
`ralph_lrs`), S3Store against moto 5 (`moto_s3`); fixtures in tests/peers.py.

What ralph 5.1 does, measured here (its file backend; where it departs from the spec or from Learning Locker, the
U2035 test LRS's likely software, the client takes both):
- POST of statements it holds already, identical: 204 with an empty body (Content-Type application/json all the
  same) and no ids. A batch partly known: 200 listing only the new ids, in input order.
- A known id with a different statement: 409 `{"detail": "Differing statements already exist with the same ID:
  <id>"}`, and the whole batch is refused (its new statements are not stored either).
- The same id twice in one batch: 400 `{"detail": "Duplicate statement IDs in the list of statements"}`.
- A statement that fails its schema: 422 with FastAPI's list of errors in `detail` (the spec and LL say 400).
- A statement sent without `timestamp` gets ralph's clock, and `timestamp` takes part in ralph's sameness check:
  resending that statement answers 409. The client's statements must carry their own timestamp.
- A statement without `id` is stored under an id ralph mints; one statement not wrapped in a list is taken too.
- GET ?statementId= wraps the statement as `{"statements": [...]}` and answers an unknown id with 200
  `{"statements": []}` (the spec: the bare statement, and 404).
- No `X-Experience-API-Version` header on any answer; a request without one is served.
- `limit` is capped at 100; `more` reads `/xAPI/statements?limit=N&pit_id=None&search_after=<id>`.
- Wrong credentials: 401 `{"detail": "Invalid authentication credentials"}`. ralph reads its auth file once, at
  the first authenticated request: a user added later is unknown until it restarts.
- No size limit of its own (no 413): a 50 MB statement was stored in ~1 s, a batch of 50 000 statements in ~3.6 s
  (its answer, 50 000 ids, 1.9 MB).
- Its file backend as shipped refuses every POST after the first one of its life (500 "Statements bulk indexation
  failed": it creates its one file each time); tests/ralph_serve.py makes it append.

moto 5: takes any keys and enforces no ACL (so the ACL is checked as moto recorded it, and wrong keys through a
missing bucket and a stopped server instead); it takes a ChecksumSHA256 that does not match the body and keeps
none, so what was sent is read off botocore's request.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bufsync.portals.u2035.lrs import LrsClient, LrsRefused, LrsUnavailable
from bufsync.portals.u2035.storage import S3Failed, S3Store
from tests.peers import RALPH_USER, MotoS3, RalphLrs, free_port

VERBS = "http://adlnet.gov/expapi/verbs/"


def statement(learner: str, verb: str = "experienced", **extra: Any) -> dict[str, Any]:
    """One statement as bufsync sends them: its own id and timestamp, the U2035 actor."""
    return {"id": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(),
            "actor": {"objectType": "Agent", "account": {"homePage": "https://my.2035.university", "name": learner}},
            "verb": {"id": VERBS + verb}, "object": {"objectType": "Activity", "id": "https://example.org/course/1"},
            **extra}


@pytest.fixture
def learner() -> str:
    """An actor of this test's own: ralph keeps every statement for the session."""
    return f"unti-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def lrs(ralph_lrs: RalphLrs) -> Iterator[LrsClient]:
    with LrsClient(ralph_lrs.base_url, ralph_lrs.key, ralph_lrs.secret, timeout=30.0) as client:
        yield client


# -- LRS ---------------------------------------------------------------------------------------------------------
def test_post_one_then_a_batch(lrs: LrsClient, learner: str) -> None:
    one = statement(learner)
    answer = lrs.post([one])
    assert (answer.status, answer.ids, answer.message, answer.stored) == (200, [one["id"]], "", True)
    batch = [statement(learner, verb) for verb in ("attempted", "passed", "completed")]
    answer = lrs.post(batch)
    assert answer.status == 200 and answer.ids == [s["id"] for s in batch]  # in input order
    assert lrs.requests == 2


def test_a_thousand_statements_in_one_batch(lrs: LrsClient, learner: str) -> None:
    batch = [statement(learner) for _ in range(1000)]
    answer = lrs.post(batch)
    assert answer.status == 200 and answer.ids == [s["id"] for s in batch]


def test_a_resend_of_known_statements_is_204_without_a_body(lrs: LrsClient, ralph_lrs: RalphLrs,
                                                             learner: str) -> None:
    batch = [statement(learner), statement(learner, "passed")]
    assert lrs.post(batch).status == 200
    again = lrs.post(batch)
    assert (again.status, again.ids, again.body, again.message, again.stored) == (204, [], "", "", True)
    assert [ralph_lrs.copies(s["id"]) for s in batch] == [1, 1]


def test_a_partly_known_batch_lists_only_the_new_ids(lrs: LrsClient, learner: str) -> None:
    known, new = statement(learner), statement(learner, "passed")
    lrs.post([known])
    answer = lrs.post([known, new])
    assert (answer.status, answer.ids) == (200, [new["id"]])


def test_a_different_statement_under_a_known_id_is_409_and_refuses_the_batch(
        lrs: LrsClient, ralph_lrs: RalphLrs, learner: str) -> None:
    first = statement(learner)
    lrs.post([first])
    changed = {**first, "verb": {"id": VERBS + "failed"}}
    bystander = statement(learner, "passed")
    answer = lrs.post([bystander, changed])
    assert answer.status == 409 and answer.ids == [] and not answer.stored
    assert answer.message == f"Differing statements already exist with the same ID: {first['id']}"
    assert first["id"] in answer.body
    assert lrs.get(bystander["id"]) is None and ralph_lrs.copies(bystander["id"]) == 0


def test_the_same_id_twice_in_one_batch_is_400(lrs: LrsClient, learner: str) -> None:
    twice = statement(learner)
    answer = lrs.post([twice, twice])
    assert (answer.status, answer.message) == (400, "Duplicate statement IDs in the list of statements")
    assert lrs.get(twice["id"]) is None


def test_a_statement_failing_ralphs_schema_is_422_with_its_errors(lrs: LrsClient, learner: str) -> None:
    broken = statement(learner)
    del broken["object"]
    answer = lrs.post([broken])
    assert answer.status == 422 and not answer.stored
    assert "body.0.object: Field required" in answer.message


def test_without_a_timestamp_a_resend_conflicts(lrs: LrsClient, learner: str) -> None:
    """ralph stamps a statement that has no timestamp, and compares timestamps: why bufsync sends its own."""
    bare = statement(learner)
    del bare["timestamp"]
    assert lrs.post([bare]).status == 200
    assert lrs.post([bare]).status == 409


def test_get_by_id_and_an_unknown_id(lrs: LrsClient, learner: str) -> None:
    sent = statement(learner, result={"score": {"scaled": 0.8}, "success": True})
    lrs.post([sent])
    found = lrs.get(sent["id"])
    assert found is not None
    assert {k: found[k] for k in ("id", "actor", "verb", "object", "result", "timestamp")} == \
        {k: sent[k] for k in ("id", "actor", "verb", "object", "result", "timestamp")}
    assert found["authority"] == {"objectType": "Agent", "mbox": f"mailto:{RALPH_USER}@example.org"}
    assert lrs.get(str(uuid.uuid4())) is None


def test_recent_is_a_statement_result_capped_at_100(lrs: LrsClient, learner: str) -> None:
    lrs.post([statement(learner) for _ in range(101)])
    one = lrs.recent()
    assert len(one["statements"]) == 1 and one["more"].startswith("/xAPI/statements?")
    assert len(lrs.recent(limit=500)["statements"]) == 100


def test_ralph_answers_without_the_version_header(ralph_lrs: RalphLrs, learner: str) -> None:
    """A raw exchange: ralph omits X-Experience-API-Version (the spec's MUST), so the client never asks for it;
    and serves a request without it."""
    answer = httpx.post(f"{ralph_lrs.base_url}/statements", json=[statement(learner)],
                        auth=(ralph_lrs.key, ralph_lrs.secret))
    assert answer.status_code == 200 and "x-experience-api-version" not in answer.headers


def test_wrong_credentials_are_refused_with_ralphs_answer(ralph_lrs: RalphLrs, learner: str) -> None:
    wrong = "not-the-secret-at-all"
    with LrsClient(ralph_lrs.base_url, ralph_lrs.key, wrong) as lrs:
        with pytest.raises(LrsRefused) as refused:
            lrs.recent()
        assert (refused.value.status, refused.value.message) == (401, "Invalid authentication credentials")
        with pytest.raises(LrsRefused):
            lrs.post([statement(learner)])
    assert wrong not in str(refused.value) and ralph_lrs.secret not in str(refused.value)


def test_a_stopped_server_is_unavailable_and_nothing_was_sent(learner: str) -> None:
    with LrsClient(f"http://127.0.0.1:{free_port()}/xAPI", "key", "secret-value", timeout=5.0) as lrs:
        with pytest.raises(LrsUnavailable) as unavailable:
            lrs.post([statement(learner)])
    assert unavailable.value.sent is False and "ConnectError" in str(unavailable.value)


def _read_message(conn: socket.socket) -> bytes:
    """One whole HTTP/1.1 message (head and a Content-Length body) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class AnswerDropper:
    """A loopback proxy for one request: forwards it to the LRS, waits for the LRS's whole answer (so it is done
    there), then closes the client's connection without a byte of it: the answer is lost, the work is not."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.answer = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.listener:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(30)
                request = _read_message(conn)
                with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as upstream:
                    upstream.sendall(request)
                    self.answer = _read_message(upstream)


def test_a_lost_answer_then_the_resend_of_the_same_ids(lrs: LrsClient, ralph_lrs: RalphLrs, learner: str) -> None:
    batch = [statement(learner), statement(learner, "passed")]
    dropper = AnswerDropper(int(httpx.URL(ralph_lrs.base_url).port or 80))
    with LrsClient(f"http://127.0.0.1:{dropper.port}/xAPI", ralph_lrs.key, ralph_lrs.secret, timeout=30.0) as lost:
        with pytest.raises(LrsUnavailable) as unavailable:
            lost.post(batch)
    dropper.thread.join(timeout=30)
    assert unavailable.value.sent is True and unavailable.value.status is None
    assert dropper.answer.startswith(b"HTTP/1.1 200")  # ralph stored them and answered; the client never saw it
    again = lrs.post(batch)  # the dispatcher's resend: the same ids
    assert (again.status, again.ids) == (204, [])
    assert [ralph_lrs.copies(s["id"]) for s in batch] == [1, 1]
    assert all(lrs.get(s["id"]) is not None for s in batch)
    # nobody listens there any more: a later call never leaves
    with LrsClient(f"http://127.0.0.1:{dropper.port}/xAPI", "k", "secret-value", timeout=5.0) as gone:
        with pytest.raises(LrsUnavailable) as refused:
            gone.recent()
    assert refused.value.sent is False


def test_a_5xx_is_unavailable_with_the_lrs_words_and_its_wait() -> None:
    """ralph has no 5xx a client can provoke; a stand-in answers as Learning Locker does."""

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"errorId": "x1", "message": "Service down for maintenance"}).encode()
            self.send_response(503)
            self.send_header("Retry-After", "7")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with LrsClient(f"http://127.0.0.1:{server.server_address[1]}/data/xAPI/statements", "k", "secret-value") as lrs:
            with pytest.raises(LrsUnavailable) as unavailable:
                lrs.post([statement("u")])
        failure = unavailable.value
        assert (failure.status, failure.sent, failure.retry_after, failure.message) == \
            (503, True, 7.0, "Service down for maintenance")
    finally:
        server.shutdown()
        server.server_close()


# -- S3 ----------------------------------------------------------------------------------------------------------
def _store(moto: MotoS3, **options: Any) -> S3Store:
    return S3Store(moto.endpoint, moto.bucket, moto.access_key, moto.secret_key, region=moto.region, **options)


def _sent_headers(store: S3Store) -> list[dict[str, str]]:
    """The headers of every PutObject this store sends, read off botocore's request."""
    seen: list[dict[str, str]] = []
    store._s3.meta.events.register("before-send.s3.PutObject",
                                   lambda request, **_: seen.append({k.lower(): v.decode() if isinstance(v, bytes)
                                                                     else str(v) for k, v in request.headers.items()}))
    return seen


def test_put_public_read_then_head_get_delete(moto_s3: MotoS3) -> None:
    data = "Дневник практики\n".encode() * 500
    digest = hashlib.sha256(data).hexdigest()
    key = "flow42/practice/diary1234.pdf"
    with _store(moto_s3) as store:
        sent = _sent_headers(store)
        store.put(key, data, content_type="application/pdf", sha256_hex=digest, length=len(data))
        assert store.head(key) == {"length": len(data), "sha256": digest, "etag": hashlib.md5(data).hexdigest(),
                                   "content_type": "application/pdf"}
        assert store.get(key) == data
        grants = moto_s3.client().get_object_acl(Bucket=moto_s3.bucket, Key=key)["Grants"]
        assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                "Permission": "READ"} in grants
        assert sent[0]["x-amz-acl"] == "public-read"
        assert sent[0]["x-amz-meta-sha256"] == digest
        assert sent[0]["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
        assert "aws-chunked" not in sent[0].get("content-encoding", "")  # botocore's own trailers stay off
        # the public fileUrl is plain path-style: anyone may fetch it (moto checks no ACL: this proves the path)
        assert store.url(key) == f"{moto_s3.endpoint}/{moto_s3.bucket}/{key}"
        assert httpx.get(store.url(key)).content == data
        store.delete(key)
        assert store.head(key) is None
        with pytest.raises(S3Failed) as missing:
            store.get(key)
    assert (missing.value.code, missing.value.transient) == ("NoSuchKey", False)


def test_put_from_a_file_without_an_acl(moto_s3: MotoS3) -> None:
    data = b"%PDF-1.4 letter scan"
    with _store(moto_s3, acl=None) as store:
        sent = _sent_headers(store)
        store.put("letters/1.pdf", io.BytesIO(data), content_type="application/pdf",
                  sha256_hex=hashlib.sha256(data).hexdigest(), length=len(data))
        assert store.get("letters/1.pdf") == data
    assert "x-amz-acl" not in sent[0]
    grants = moto_s3.client().get_object_acl(Bucket=moto_s3.bucket, Key="letters/1.pdf")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]


def test_the_public_url_under_a_public_base(moto_s3: MotoS3) -> None:
    with _store(moto_s3, public_base="https://files.example.org/") as store:
        assert store.url("flow1/practice/дневник 1.pdf") == \
            f"https://files.example.org/{moto_s3.bucket}/flow1/practice/%D0%B4%D0%BD%D0%B5%D0%B2%D0%BD%D0%B8%D0%BA%201.pdf"


def test_check_writes_reads_back_and_leaves_nothing(moto_s3: MotoS3) -> None:
    with _store(moto_s3) as store:
        said = store.check()
    assert said.startswith(f"{moto_s3.bucket}: wrote, read back and deleted bufsync-check/")
    assert moto_s3.client().list_objects_v2(Bucket=moto_s3.bucket).get("KeyCount") == 0


def test_a_missing_bucket_is_the_stores_own_refusal(moto_s3: MotoS3) -> None:
    with S3Store(moto_s3.endpoint, "no-such-bucket-here", moto_s3.access_key, moto_s3.secret_key) as store:
        with pytest.raises(S3Failed) as failed:
            store.check()
    assert (failed.value.code, failed.value.transient) == ("NoSuchBucket", False)
    assert "The specified bucket does not exist" in failed.value.message
    assert moto_s3.secret_key not in str(failed.value)


def test_a_stopped_server_is_unreachable_and_transient() -> None:
    with S3Store(f"http://127.0.0.1:{free_port()}", "bucket", "AKIA", "secret-value", timeout=5.0,
                 attempts=1) as store:
        with pytest.raises(S3Failed) as failed:
            store.check()
        assert (failed.value.code, failed.value.transient) == ("Unreachable", True)
        with pytest.raises(S3Failed) as head:
            store.head("any")
    assert head.value.code == "Unreachable"
