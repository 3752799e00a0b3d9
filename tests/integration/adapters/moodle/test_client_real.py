"""The same client behaviours against a real Moodle 4.5 (../shared/moodle-real/up).

Skipped unless BUFSYNC_TEST_MOODLE_URL and BUFSYNC_TEST_MOODLE_TOKEN are set (CI has no
Moodle). Each run uses fresh usernames and deletes what it created.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from bufsync.adapters.moodle.client import REQUIRED_FUNCTIONS, MoodleClient
from bufsync.adapters.moodle.errors import MoodleError

URL = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
TOKEN = os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
pytestmark = [pytest.mark.moodle, pytest.mark.skipif(
    not (URL and TOKEN), reason="no real Moodle: run ../shared/moodle-real/up and export "
                                "BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")]


@pytest.fixture
def real() -> Iterator[tuple[MoodleClient, list[int]]]:
    created: list[int] = []
    with MoodleClient.connect(URL, TOKEN, timeout=120) as client:
        yield client, created
        for start in range(0, len(created), 200):
            client.delete_users(created[start:start + 200])


def people(n: int) -> list[dict]:
    run = f"r{int(time.time() * 1000) % 10**9}"
    return [{"username": f"{run}u{i:04d}", "firstname": "Иван", "lastname": f"Иванов{i}",
             "email": f"{run}u{i:04d}@example.edu", "idnumber": f"EXT-{run}-{i}", "createpassword": True}
            for i in range(n)]


def test_service_has_what_bufsync_needs(real) -> None:
    client, _ = real
    assert client.site_info()["release"].startswith("4.5")
    assert client.missing_functions(REQUIRED_FUNCTIONS) == []


def test_one_bad_row_in_200_fails_alone_with_the_real_reason(real) -> None:
    client, created = real
    first = client.create_users(people(1))
    created += [r.remote_id for r in first if r.ok]
    taken = client.get_users_by_field("id", [first[0].remote_id])[0]["email"]
    batch = people(200)
    batch[137]["email"] = taken.upper()
    results = client.create_users(batch)
    created += [r.remote_id for r in results if r.ok]
    assert [i for i, r in enumerate(results) if not r.ok] == [137]
    assert "уже используется другой учётной записью Moodle" in results[137].error
    assert results[137].error.endswith("(invalidparameter)")


def test_silent_truncation_on_the_real_site(real) -> None:
    """The client believes max_input_vars is 20000; the real PHP keeps 5001 fields and drops the rest."""
    client, created = real
    with MoodleClient.connect(URL, TOKEN, timeout=120, max_input_vars=20000) as careless:
        results = careless.create_users(people(900))
    created += [r.remote_id for r in results if r.ok]
    assert all(r.ok for r in results)
    assert len(set(created)) == len(created)


def test_update_warnings_and_invalid_response(real) -> None:
    client, created = real
    ids = [r.remote_id for r in client.create_users(people(3))]
    created += ids
    results = client.update_users([{"id": ids[0], "city": "Казань"}, {"id": 999999, "city": "x"},
                                   {"id": ids[1], "password": "abc"}])
    assert results[0].ok
    assert results[1].code == "invaliduserid"
    assert results[2].code == "invalidresponse"


def test_cyrillic_login_is_rejected_locally_and_by_moodle(real) -> None:
    client, _ = real
    user = people(1)[0] | {"username": "иванов"}
    assert client.create_users([user])[0].error.startswith("Логин «иванов» недопустим")
    with pytest.raises(MoodleError) as err:
        client.call("core_user_create_users", {"users": [user]}, write=True)
    assert err.value.errorcode == "invalidparameter"
