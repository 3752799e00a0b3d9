"""retry and cancel take only the statuses that allow them (issue 11, defect 7: `retry --status done` sent 740
delivered items twice); anything else is refused with the reason, by status or by id, and nothing changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bufsync.queue import outbox
from tests.integration.clirun import bufsync_in_process


def items(n: int) -> list[outbox.Item]:
    return [outbox.Item("scos", "participation_add", {"course_id": "c1", "user_id": f"u{i}"}, f"enrol:c1:u{i}", 3)
            for i in range(n)]


@pytest.fixture
def one_of_each(queue) -> tuple:
    """Six items, one per status: pending, running, done, failed, dead, cancelled (ids in that order)."""
    engine, table = queue
    outbox.enqueue(engine, table, items(6))
    ids = [r["id"] for r in sorted(outbox.listing(engine, table), key=lambda r: r["id"])]
    assert outbox.cancel(engine, table, [ids[5]]) == 1
    claimed = {i["id"]: i for i in outbox.claim(engine, table, "scos", 5, 60, "w")}
    assert outbox.release(engine, table, [claimed[ids[0]]], "w", "given back") == 1  # pending again
    outbox.complete(engine, table, ids[2], "w", {"saved": True})
    outbox.fail(engine, table, claimed[ids[3]], "w", "HTTP 503", permanent=False)
    outbox.fail(engine, table, claimed[ids[4]], "w", "HTTP 400: bad", permanent=True)
    return engine, table, ids


def statuses(engine, table) -> dict[int, tuple[str, int]]:
    return {r["id"]: (r["status"], r["attempts"]) for r in outbox.listing(engine, table)}


@pytest.mark.parametrize("status", ["done", "running", "pending"])
def test_retry_by_status_refuses_what_it_must_not_send(one_of_each, status: str) -> None:
    engine, table, ids = one_of_each
    before = statuses(engine, table)
    with pytest.raises(outbox.QueueRefused) as refused:
        outbox.retry(engine, table, status=status)
    assert f"not {status}" in str(refused.value) and "retry takes only failed, dead or cancelled" in str(refused.value)
    assert refused.value.exit_code == 2
    assert statuses(engine, table) == before


@pytest.mark.parametrize("status", ["done", "running", "cancelled"])
def test_cancel_by_status_refuses_what_it_cannot_cancel(one_of_each, status: str) -> None:
    engine, table, ids = one_of_each
    before = statuses(engine, table)
    with pytest.raises(outbox.QueueRefused) as refused:
        outbox.cancel(engine, table, status=status)
    assert "cancel takes only pending, failed or dead" in str(refused.value)
    assert statuses(engine, table) == before


def test_retry_and_cancel_by_id_refuse_naming_the_ids_and_change_nothing(one_of_each) -> None:
    engine, table, ids = one_of_each
    pending, running, done, failed, dead, cancelled = ids
    before = statuses(engine, table)
    with pytest.raises(outbox.QueueRefused) as refused:
        outbox.retry(engine, table, [failed, done, dead, running, 999999])
    text = str(refused.value)
    assert f"item {done} is done" in text and f"item {running} is running" in text and "no item 999999" in text
    assert str(failed) not in text.split("(")[0] and "nothing was changed" in text
    assert statuses(engine, table) == before  # the failed and the dead one were not retried either
    with pytest.raises(outbox.QueueRefused) as refused:
        outbox.cancel(engine, table, [pending, done, cancelled])
    assert f"item {done} is done" in str(refused.value) and f"item {cancelled} is cancelled" in str(refused.value)
    assert statuses(engine, table) == before
    with pytest.raises(outbox.QueueRefused) as refused:  # ids that do not match the --portal given
        outbox.retry(engine, table, [failed], portal="sferum")
    assert f"item {failed} is of portal scos, not sferum" in str(refused.value)


def test_allowed_statuses_are_acted_on_by_status_and_by_id(one_of_each) -> None:
    engine, table, ids = one_of_each
    pending, running, done, failed, dead, cancelled = ids
    assert outbox.retry(engine, table, [failed, dead]) == 2
    after = statuses(engine, table)
    assert after[failed] == ("pending", 0) and after[dead] == ("pending", 0)
    assert outbox.retry(engine, table, status="cancelled") == 1 and statuses(engine, table)[cancelled][0] == "pending"
    assert outbox.cancel(engine, table, [dead]) == 1  # dead can be cancelled too (it was retried: now pending)
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == failed).values(status="dead"))
    assert outbox.cancel(engine, table, status="dead") == 1
    final = statuses(engine, table)
    assert final[done] == ("done", 1) and final[running][0] == "running"  # never touched
    assert final[dead][0] == "cancelled" and final[failed][0] == "cancelled"


def test_the_cli_refuses_with_one_line_and_exit_code_2(one_of_each, buffer_url: str, tmp_path: Path) -> None:
    engine, table, ids = one_of_each
    pending, running, done, failed, dead, cancelled = ids
    before = statuses(engine, table)
    exe = str(Path(sys.executable).with_name("bufsync"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")} | {"BUFSYNC_BUFFER_URL": buffer_url}

    def run(*args: str, process: bool = False) -> subprocess.CompletedProcess:
        """The first refusal from the console script in a real process; the others' output and exit codes
        in-process, without a process start each (tests/clirun.py)."""
        if not process:
            return bufsync_in_process("queue", *args, env={"BUFSYNC_BUFFER_URL": buffer_url})
        return subprocess.run([exe, "queue", *args], capture_output=True, text=True, env=env, cwd=tmp_path)

    for n, args in enumerate((("retry", "--status", "done"), ("retry", str(done), str(failed)),
                              ("cancel", "--status", "running"), ("cancel", str(running)))):
        result = run(*args, process=n == 0)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"bufsync: queue {args[0]} refused: "), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert "done items were delivered" in run("retry", "--status", "done").stderr
    assert statuses(engine, table) == before
    result = run("retry", str(failed))
    assert result.returncode == 0 and result.stdout.startswith("1 item(s) back to pending")
