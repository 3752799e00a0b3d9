"""Several Moodle calls in flight (moodle.concurrency): what Moodle holds afterwards and what the buffer says.

The sandbox's `gather` fault holds each answer until the wanted number of calls is in flight together (or a
time limit passes), so these tests learn from what reached the server whether the client overlapped its calls,
never from how fast the machine is.
"""

from __future__ import annotations

from typing import Any

import pytest

from bufsync.config import load_settings
from bufsync.runner import RunBusy
from bufsync.sandbox.faults import FaultRule
from tests.integration.reconcile.conftest import TOKEN, World, people


def configured(world: World, **moodle: str) -> None:
    env = {"BUFSYNC_BUFFER_URL": world.engine.url.render_as_string(hide_password=False),
           "BUFSYNC_MOODLE_URL": world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN}
    env.update({f"BUFSYNC_MOODLE_{k.upper()}": v for k, v in moodle.items()})
    world.loaded = load_settings(None, env)


def reset_stats(world: World) -> None:
    world.moodle.set_faults({"reset_stats": True})


def moodle_users_by_idnumber(world: World, keys: list[str]) -> dict[str, list[dict[str, Any]]]:
    with world.ws() as client:
        found = client.get_users_by_field("idnumber", keys)
    out: dict[str, list[dict[str, Any]]] = {}
    for user in found:
        out.setdefault(user["idnumber"], []).append(user)
    return out


def assert_all_synced(world: World, rows: list[dict[str, Any]]) -> None:
    """Each person exists once in Moodle with their login, and their row links to that account."""
    remote = moodle_users_by_idnumber(world, [r["external_id"] for r in rows])
    buffer = {r["external_id"]: r for r in world.rows("buf_users")}
    for person in rows:
        accounts = remote.get(person["external_id"], [])
        assert len(accounts) == 1, (person["external_id"], accounts)
        assert accounts[0]["username"] == person["username"]
        assert accounts[0]["lastname"] == person["last_name"]
        row = buffer[person["external_id"]]
        assert (row["sync_status"], row["lms_id"]) == ("ok", accounts[0]["id"]), row


def test_a_first_load_keeps_the_configured_number_of_calls_in_flight(world: World) -> None:
    configured(world, concurrency="4")
    rows = people(400)
    world.insert("buf_users", rows)
    world.moodle.faults.add(FaultRule(kind="gather", function="core_user_create_users", in_flight=4, seconds=20))
    reset_stats(world)
    report = world.run("users")
    assert report.outcome == "ok"
    stats = world.moodle.stats()
    assert stats["calls"]["core_user_create_users"] == 4  # 400 people spread over the 4 calls in flight
    assert stats["peak_in_flight"] == 4
    assert_all_synced(world, rows)


def test_never_more_calls_in_flight_than_configured(world: World) -> None:
    configured(world, concurrency="2", batch_items="50")
    rows = people(400)
    world.insert("buf_users", rows)
    world.moodle.faults.add(FaultRule(kind="gather", function="core_user_create_users", in_flight=2, seconds=20))
    reset_stats(world)
    assert world.run("users").outcome == "ok"
    stats = world.moodle.stats()
    assert stats["calls"]["core_user_create_users"] == 8  # batch_items caps each call
    assert stats["peak_in_flight"] == 2
    assert_all_synced(world, rows)


def test_one_set_means_one_call_after_another(world: World) -> None:
    configured(world, concurrency="1")
    rows = people(300)
    world.insert("buf_users", rows)
    reset_stats(world)
    assert world.run("users").outcome == "ok"
    assert world.moodle.stats()["peak_in_flight"] == 1
    assert_all_synced(world, rows)


def test_a_lost_answer_in_one_of_the_parallel_calls_creates_nobody_twice(world: World) -> None:
    """One of four calls answers 500 after nothing was written: it is read back and sent again alone."""
    configured(world, concurrency="4")
    rows = people(400)
    world.insert("buf_users", rows)
    world.moodle.faults.add(FaultRule(kind="http_500", function="core_user_create_users", count=1, skip=1))
    report = world.run("users")
    assert report.outcome == "ok"
    assert world.moodle.stats()["faults_fired"].get("http_500") == 1
    assert_all_synced(world, rows)


def test_a_call_that_keeps_failing_stops_the_run_and_the_next_run_finishes_without_duplicates(world: World) -> None:
    """Two calls succeed, the other two never get an answer through: the run stops with nothing unconfirmed
    marked ok, and the next run adopts the accounts the finished calls created instead of creating them again."""
    configured(world, concurrency="4")
    rows = people(400)
    world.insert("buf_users", rows)
    world.moodle.faults.add(FaultRule(kind="http_503", function="core_user_create_users", rate=1.0, skip=2))
    with pytest.raises(RunBusy, match="nothing was marked ok"):
        world.run("users")
    assert all(r["sync_status"] is None for r in world.rows("buf_users"))  # nothing claimed without a record
    made = moodle_users_by_idnumber(world, [r["external_id"] for r in rows])
    assert 0 < len(made) < 400 and all(len(accounts) == 1 for accounts in made.values())
    world.moodle.faults.clear()
    assert world.run("users").outcome == "ok"
    assert_all_synced(world, rows)


def test_enrolments_in_parallel_calls_isolate_a_bad_row_to_itself(world: World) -> None:
    """A person deleted in Moodle by hand fails alone inside one of the parallel enrolment calls."""
    configured(world, concurrency="4")
    rows = people(200)
    world.insert("buf_users", rows)
    world.insert("buf_courses", [{"external_id": "C1", "shortname": "c1", "fullname": "Курс 1", "status": "active"}])
    world.insert("buf_subscriptions", [{"user_external_id": r["external_id"], "course_external_id": "C1",
                                        "role": "student", "status": "active"} for r in rows])
    assert world.run("users", "courses").outcome == "ok"
    gone = next(r for r in world.rows("buf_users") if r["external_id"] == "P00123")
    with world.ws() as client:
        client.delete_users([gone["lms_id"]])
    world.moodle.faults.add(FaultRule(kind="gather", function="enrol_manual_enrol_users", in_flight=4, seconds=20,
                                      count=4))  # the four first calls; the bad one's bisection follows alone
    reset_stats(world)
    report = world.run("subscriptions")
    assert report.outcome == "rejected"
    assert world.moodle.stats()["peak_in_flight"] == 4
    course = next(r for r in world.rows("buf_courses"))["lms_id"]
    enrolled = world.ws_enrolled(course)
    ids = {r["external_id"]: r["lms_id"] for r in world.rows("buf_users")}
    assert set(enrolled) == {i for k, i in ids.items() if k != "P00123"}
    assert all(e["roles"] == ["student"] and e["active"] for e in enrolled.values())
    subs = {r["user_external_id"]: r for r in world.rows("buf_subscriptions")}
    assert subs["P00123"]["sync_status"] == "error" and "удалён" in subs["P00123"]["sync_error"]
    assert all(r["sync_status"] == "ok" for k, r in subs.items() if k != "P00123")
