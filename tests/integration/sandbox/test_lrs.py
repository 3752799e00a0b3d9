"""The sandbox LRS over real HTTP, as an xAPI client meets it: Learning Locker's idempotency rules (a resend
answers as the first send did, a different body under a known id is 409, an id twice in one batch is 400),
validation naming the field, Basic auth, the version header, the size and rate limits, reading back by id and
by filters with `more` paging, the lost answer, the state kept in a file. The clock is stopped in every test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bufsync.sandbox.lrs import LrsConfig, LrsServer, start

EPOCH = 1_700_000_000.0
KEY, SECRET = "sandbox-key", "sandbox-secret"
HOME = "https://my.2035.university"
PASSED = "http://adlnet.gov/expapi/verbs/passed"
V = {"X-Experience-API-Version": "1.0.3"}
DIARY = "https://id.2035.university/xapi/attachments/practice-diary"


def statement(learner: str = "1", verb: str = PASSED, activity: str = "https://example.org/course/1",
              **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "actor": {"objectType": "Agent", "account": {"homePage": HOME, "name": learner}},
            "verb": {"id": verb}, "object": {"id": activity}, "timestamp": "2024-05-01T10:00:00.000Z", **extra}


class Lrs:
    def __init__(self, server: LrsServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.endpoint, auth=(KEY, SECRET), headers=V, timeout=10)

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        return self.http.post("/statements", json=body, **kwargs)

    def get(self, **params: str) -> httpx.Response:
        return self.http.get("/statements", params=params)


def running(data: str | None = None, **knobs: Any) -> Iterator[Lrs]:
    config = LrsConfig(credentials={KEY: SECRET, "reader": "reader-secret"}, read_only={"reader"}, clock=EPOCH,
                       **knobs)
    server = start(config=config, data=data)
    client = Lrs(server)
    try:
        yield client
    finally:
        client.http.close()
        server.shutdown()
        server.server_close()


@pytest.fixture
def lrs() -> Iterator[Lrs]:
    yield from running()


def error(answer: httpx.Response, status: int) -> str:
    """The LL error body's message, after checking the status, the body's shape and the xAPI headers."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) >= {"errorId", "message"} and uuid.UUID(body["errorId"])
    assert answer.headers["x-experience-api-version"] == "1.0.3"
    assert answer.headers["x-experience-api-consistent-through"]
    message: str = body["message"]
    return message


# -- posting ------------------------------------------------------------------------------------------
def test_post_one_or_many_answers_ids_in_order_and_mints_missing_ones(lrs: Lrs) -> None:
    one = statement()
    answer = lrs.post(one)
    assert answer.status_code == 200 and answer.json() == [one["id"]]
    assert answer.headers["x-experience-api-version"] == "1.0.3"
    assert answer.headers["x-experience-api-consistent-through"] == "2023-11-14T22:13:20.000Z"
    two, three = statement(), statement()
    anonymous = {k: v for k, v in statement().items() if k != "id"}
    ids = lrs.post([two, anonymous, three]).json()
    assert ids[0] == two["id"] and ids[2] == three["id"] and uuid.UUID(ids[1]).version == 4
    assert [s["id"] for s in lrs.server.lrs.all()] == [one["id"], *ids]
    assert lrs.server.lrs.calls["POST /statements"] == 2


def test_identical_resend_is_accepted_and_stored_once(lrs: Lrs) -> None:
    """LL compares a hash of what the client sent: a resend answers as the first send did, whatever LL added
    (stored, authority, version, a timestamp) and whether the default objectTypes were written out."""
    first, untimed = statement(), {k: v for k, v in statement().items() if k != "timestamp"}
    assert lrs.post([first, untimed]).json() == [first["id"], untimed["id"]]
    stored_before = lrs.server.lrs.stored(first["id"])
    lrs.server.lrs.move_clock(advance=60)
    assert lrs.post([first, untimed]).json() == [first["id"], untimed["id"]]
    assert lrs.post(untimed).json() == [untimed["id"]]
    spelled_out = {**first, "object": {"objectType": "Activity", "id": first["object"]["id"]}}
    assert lrs.post(spelled_out).status_code == 200
    fresh = statement()
    assert lrs.post([first, fresh]).json() == [first["id"], fresh["id"]]  # LL answers every id, known ones too
    assert len(lrs.server.lrs.all()) == 3
    assert lrs.server.lrs.stored(first["id"]) == stored_before  # `stored` is the first time's
    assert lrs.server.lrs.received[first["id"]] == 4


def test_a_different_body_under_a_known_id_is_409_and_nothing_of_the_batch_is_stored(lrs: Lrs) -> None:
    known = statement()
    lrs.post(known)
    fresh = statement()
    changed = {**known, "verb": {"id": "http://adlnet.gov/expapi/verbs/failed"}}
    assert error(lrs.post([fresh, changed]), 409) == f"{known['id']} is conflicting"
    assert lrs.server.lrs.stored(fresh["id"]) is None
    # the same instant written another way is another statement to LL: a client resends its exact timestamp
    error(lrs.post({**known, "timestamp": "2024-05-01T10:00:00Z"}), 409)
    assert lrs.server.lrs.stored(known["id"])["verb"]["id"] == PASSED  # type: ignore[index]


def test_the_same_id_twice_in_one_batch_is_400(lrs: Lrs) -> None:
    twin = statement()
    assert error(lrs.post([twin, {**twin}]), 400) == f"{twin['id']} is duplicated in the current batch"
    assert error(lrs.post([twin, {**twin, "verb": {"id": "http://a.example/b"}}]), 400).endswith("current batch")
    untitled = {k: v for k, v in statement().items() if k != "id"}
    assert len(set(lrs.post([untitled, untitled]).json())) == 2  # no id: two statements
    assert lrs.server.lrs.stored(twin["id"]) is None


@pytest.mark.parametrize(("change", "field"), [
    ({"actor": None}, "statement.actor"),
    ({"verb": None}, "statement.verb"),
    ({"object": None}, "statement.object"),
    ({"id": "not-a-uuid"}, "statement.id"),
    ({"actor": {"account": {"homePage": HOME}}}, "statement.actor.account.name"),
    ({"actor": {"mbox": "a@b.c"}}, "statement.actor.mbox"),
    ({"verb": {"display": {"en": "passed"}}}, "statement.verb.id"),
    ({"object": {"objectType": "StatementRef", "id": "x"}}, "statement.object.id"),
    ({"timestamp": "yesterday"}, "statement.timestamp"),
    ({"result": {"score": {"scaled": 2}}}, "statement.result.score.scaled"),
    ({"context": {"registration": "r"}}, "statement.context.registration"),
    ({"surprise": 1}, "statement.surprise"),
    ({"attachments": [{"usageType": DIARY, "display": {"ru": "Дневник"}, "contentType": "application/pdf",
                       "length": 3, "fileUrl": "https://s3.example/b/k.pdf"}]}, "statement.attachments.0.sha2"),
    ({"attachments": [{"usageType": DIARY, "display": {"ru": "Дневник"}, "contentType": "application/pdf",
                       "sha2": "a" * 64, "fileUrl": "https://s3.example/b/k.pdf"}]}, "statement.attachments.0.length"),
    ({"attachments": [{"usageType": "practice-diary", "display": {"ru": "Дневник"}, "contentType": "application/pdf",
                       "length": 3, "sha2": "a" * 64}]}, "statement.attachments.0.usageType"),
])
def test_validation_names_the_field(lrs: Lrs, change: dict[str, Any], field: str) -> None:
    bad = statement() | change
    bad = {k: v for k, v in bad.items() if v is not None}
    message = error(lrs.post(bad), 400)
    assert f"Problem in '{field}'" in message
    assert f"Problem in '{field.replace('statement', 'statements.1', 1)}'" in error(lrs.post([statement(), bad]), 400)
    assert lrs.server.lrs.all() == []  # one bad statement refuses the batch


def test_a_file_referenced_by_url_is_accepted(lrs: Lrs) -> None:
    attachment = {"usageType": DIARY, "display": {"ru": "Дневник практики"}, "contentType": "application/pdf",
                  "length": 3, "sha2": "ab" * 32, "fileUrl": "https://s3.example/bucket/flow1/practice/diary1.pdf"}
    sent = statement(attachments=[attachment],
                     context={"contextActivities": {"parent": {"id": "https://example.org/course"}}})
    assert lrs.post(sent).status_code == 200
    stored = lrs.server.lrs.stored(sent["id"])
    assert stored is not None and stored["attachments"] == [attachment]
    assert stored["context"]["contextActivities"]["parent"] == [{"id": "https://example.org/course",
                                                                  "objectType": "Activity"}]


def test_empty_batch_bad_json_and_content_type(lrs: Lrs) -> None:
    assert error(lrs.post([]), 400) == "No statements in request content"
    assert error(lrs.http.post("/statements", content=b"{", headers={"Content-Type": "application/json"}),
                 400) == "Expected valid JSON in body"
    assert "is not supported" in error(lrs.http.post("/statements", content=b"[]",
                                                     headers={"Content-Type": "text/plain"}), 400)


# -- access ----------------------------------------------------------------------------------------------
def test_basic_auth(lrs: Lrs) -> None:
    for auth in ((KEY, "wrong"), ("nobody", SECRET)):
        assert error(httpx.post(lrs.server.endpoint + "/statements", json=statement(), headers=V, auth=auth),
                     401) == "Unauthorised"
    assert error(httpx.get(lrs.server.endpoint + "/statements", headers=V), 401) == "Unauthorised"
    garbled = {**V, "Authorization": "Basic !!!"}
    error(httpx.get(lrs.server.endpoint + "/statements", headers=garbled), 401)
    reader = httpx.Client(base_url=lrs.server.endpoint, auth=("reader", "reader-secret"), headers=V)
    assert reader.get("/statements").status_code == 200
    assert "scopes" in error(reader.post("/statements", json=statement()), 403)
    assert lrs.server.lrs.all() == []


def test_version_header_is_required(lrs: Lrs) -> None:
    plain = httpx.Client(base_url=lrs.server.endpoint, auth=(KEY, SECRET))
    assert "missing" in error(plain.post("/statements", json=statement()), 400)
    assert "not supported" in error(plain.get("/statements", headers={"X-Experience-API-Version": "2.0.0"}), 400)
    assert plain.get("/statements", headers={"X-Experience-API-Version": "1.0.1"}).status_code == 200
    assert lrs.server.lrs.all() == []


def test_about_needs_no_credentials(lrs: Lrs) -> None:
    answer = httpx.get(lrs.server.endpoint + "/about")
    assert answer.status_code == 200 and answer.json()["version"] == ["1.0.3"]
    assert answer.headers["x-experience-api-version"] == "1.0.3"
    assert "No route" in error(httpx.get(lrs.server.url + "/xAPI/statements", headers=V, auth=(KEY, SECRET)), 404)


def test_a_body_over_the_limit_is_413() -> None:
    for lrs in running(max_body=2000):
        small = statement()
        large = [statement(context={"extensions": {"https://example.org/pad": "x" * 3000}})]
        assert "over the limit of 2000" in error(lrs.post(large), 413)
        assert lrs.post(small).status_code == 200
        assert len(lrs.server.lrs.all()) == 1


def test_rate_limit_per_key_on_the_test_clock() -> None:
    for lrs in running(rate_limit=2, rate_window=60):
        lrs.server.lrs.move_clock(at=EPOCH - EPOCH % 60 + 45)  # 15 s before the window ends
        assert lrs.post(statement()).status_code == 200
        assert lrs.get(limit="1").status_code == 200
        limited = lrs.post(statement())
        assert "at most 2 per 60 s" in error(limited, 429) and limited.headers["retry-after"] == "15"
        reader = httpx.Client(base_url=lrs.server.endpoint, auth=("reader", "reader-secret"), headers=V)
        assert reader.get("/statements").status_code == 200  # its own budget
        lrs.server.lrs.move_clock(advance=15)
        assert lrs.post(statement()).status_code == 200
        assert len(lrs.server.lrs.all()) == 2


# -- reading ----------------------------------------------------------------------------------------------
def test_get_by_id(lrs: Lrs) -> None:
    sent = statement()
    lrs.post(sent)
    answer = lrs.get(statementId=sent["id"])
    assert answer.status_code == 200
    got = answer.json()
    assert got["id"] == sent["id"] and got["timestamp"] == sent["timestamp"]
    assert got["stored"] == "2023-11-14T22:13:20.000Z" and got["version"] == "1.0.0"
    assert got["authority"] == {"objectType": "Agent", "name": "New Client", "mbox": "mailto:hello@learninglocker.net"}
    assert got["actor"] == sent["actor"] and got["object"] == {"id": sent["object"]["id"], "objectType": "Activity"}
    missing = str(uuid.uuid4())
    assert error(lrs.get(statementId=missing), 404) == f"No model found for {missing}"
    assert error(lrs.get(statementId=sent["id"], limit="1"), 400) == "Cannot use unknown params 'limit'"
    assert error(lrs.get(foo="1"), 400) == "Cannot use unknown params 'foo'"


def test_paging_through_more_newest_first_or_ascending(lrs: Lrs) -> None:
    ids = lrs.post([statement(learner=str(n)) for n in range(5)]).json()
    seen: list[str] = []
    page = lrs.get(limit="2").json()
    while True:
        seen += [s["id"] for s in page["statements"]]
        if not page["more"]:
            break
        assert page["more"].startswith("/data/xAPI/statements?limit=2&cursor=")
        page = lrs.http.get(lrs.server.url + page["more"]).json()
    assert seen == ids[::-1]
    ascending = lrs.get(limit="3", ascending="true").json()
    assert [s["id"] for s in ascending["statements"]] == ids[:3]
    rest = lrs.http.get(lrs.server.url + ascending["more"]).json()
    assert [s["id"] for s in rest["statements"]] == ids[3:] and rest["more"] == ""
    assert len(lrs.get(limit="0").json()["statements"]) == 5


def test_page_size_caps_limit() -> None:
    for lrs in running(page_size=2):
        lrs.post([statement() for _ in range(3)])
        page = lrs.get(limit="1000").json()
        assert len(page["statements"]) == 2 and page["more"]


def test_filters_since_until_agent_verb_activity(lrs: Lrs) -> None:
    early = statement(learner="7")
    lrs.post(early)
    lrs.server.lrs.move_clock(advance=3600)
    middle = statement(learner="8", verb="http://activitystrea.ms/schema/1.0/watch")
    lrs.post(middle)
    lrs.server.lrs.move_clock(advance=3600)
    late = statement(learner="7", activity="https://example.org/course/2",
                     context={"contextActivities": {"parent": [{"id": "https://example.org/programme"}]}})
    lrs.post(late)

    def ids(**params: str) -> list[str]:
        answer = lrs.get(**params)
        assert answer.status_code == 200, answer.text
        return [s["id"] for s in answer.json()["statements"]]

    assert ids(since="2023-11-14T22:13:20.000Z") == [late["id"], middle["id"]]  # since is exclusive
    assert ids(until="2023-11-14T23:13:20Z") == [middle["id"], early["id"]]    # until inclusive
    agent = '{"account": {"homePage": "https://my.2035.university", "name": "7"}}'
    assert ids(agent=agent, ascending="true") == [early["id"], late["id"]]
    assert ids(verb="http://activitystrea.ms/schema/1.0/watch") == [middle["id"]]
    assert ids(activity="https://example.org/course/2") == [late["id"]]
    assert ids(activity="https://example.org/programme") == []
    assert ids(activity="https://example.org/programme", related_activities="true") == [late["id"]]
    assert "since" in error(lrs.get(since="last week"), 400)
    assert "agent" in error(lrs.get(agent="{nope"), 400)


def test_put_statement(lrs: Lrs) -> None:
    sent = statement()
    body = {k: v for k, v in sent.items() if k != "id"}
    answer = lrs.http.put("/statements", params={"statementId": sent["id"]}, json=body)
    assert answer.status_code == 204 and answer.content == b""
    assert lrs.http.put("/statements", params={"statementId": sent["id"]}, json=sent).status_code == 204
    error(lrs.http.put("/statements", params={"statementId": sent["id"]}, json={**body, "verb": {"id": "http://x/y"}}),
          409)
    error(lrs.http.put("/statements", params={"statementId": str(uuid.uuid4())}, json=sent), 400)
    error(lrs.http.put("/statements", json=body), 400)
    assert len(lrs.server.lrs.all()) == 1


# -- faults and state -----------------------------------------------------------------------------------
def test_lost_answer_after_storing_then_resend(lrs: Lrs) -> None:
    """The LRS stored the batch and the answer never came: the resend of the same ids is answered 200 with the
    same ids, and nothing is stored twice."""
    batch = [statement(), statement()]
    lrs.server.set_faults([{"kind": "drop_after_write", "function": "POST /statements", "count": 1}])
    with pytest.raises(httpx.RemoteProtocolError):
        lrs.post(batch)
    assert [s["id"] for s in lrs.server.lrs.all()] == [s["id"] for s in batch]
    assert lrs.post(batch).json() == [s["id"] for s in batch]
    assert len(lrs.server.lrs.all()) == 2
    assert lrs.server.lrs.calls["POST /statements"] == 2
    assert lrs.server.lrs.answers == {"POST /statements lost": 1, "POST /statements 200": 1}


def test_injected_server_errors_store_nothing(lrs: Lrs) -> None:
    lrs.server.set_faults([{"kind": "http_503", "function": "POST /statements", "count": 1}])
    assert lrs.post(statement()).status_code == 503
    assert lrs.server.lrs.all() == []
    assert lrs.get().status_code == 200  # the rule was narrowed to POST


def test_sandbox_state_needs_credentials(lrs: Lrs) -> None:
    sent = statement()
    lrs.post(sent)
    assert httpx.get(lrs.server.url + "/sandbox/state").status_code == 401
    state = httpx.get(lrs.server.url + "/sandbox/state", auth=(KEY, SECRET)).json()
    assert state["ids"] == [sent["id"]] and state["calls"] == {"POST /statements": 1}


def test_state_and_credentials_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "lrs.json")
    sent = statement()
    for lrs in running(data=path):
        lrs.post(sent)
    server = start(config=LrsConfig(clock=EPOCH), data=path)  # fresh random credentials are replaced by the saved
    try:
        client = httpx.Client(base_url=server.endpoint, auth=(KEY, SECRET), headers=V)
        assert client.get("/statements", params={"statementId": sent["id"]}).json()["id"] == sent["id"]
        assert client.post("/statements", json=sent).json() == [sent["id"]]
        assert len(server.lrs.all()) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_default_credentials_are_random_per_sandbox() -> None:
    first, second = LrsConfig(), LrsConfig()
    assert len(first.credentials) == 1 and first.credentials != second.credentials
    key, secret = next(iter(first.credentials.items()))
    assert len(key) == len(secret) == 40


def test_default_credentials_are_kept_from_the_first_start(tmp_path: Path) -> None:
    path = str(tmp_path / "lrs.json")
    first = start(data=path)
    first.shutdown()
    first.server_close()
    second = start(data=path)
    try:
        assert second.lrs.config.credentials == first.lrs.config.credentials
    finally:
        second.shutdown()
        second.server_close()
