"""The removal guard's floor: a small table may lose a leaver or two; more is refused with clear numbers."""

from __future__ import annotations

import pytest

from bufsync.runner import GuardRefused
from tests.integration.reconcile.conftest import World, people


def test_small_table_one_removal_applied_three_refused(world: World) -> None:
    world.insert("buf_users", people(7))
    world.run("users")
    # 1 of 7 is 14%, over max_remove_ratio 10% (= 0 records of 7), but within min_removals (2)
    world.delete("buf_users", lambda t: t.c.external_id == "P00006")
    report = world.run("users")
    assert report.mappings[0].counts["suspended"] == 1
    assert world.ws_user(idnumber="P00006")["suspended"]  # Moodle holds the suspension, read through Web Services
    assert not world.ws_user(idnumber="P00005")["suspended"]
    # 3 more: over the floor (the one already suspended is not removed again, but stays linked)
    world.delete("buf_users", lambda t: t.c.external_id.in_(["P00003", "P00004", "P00005"]))
    with pytest.raises(GuardRefused) as refused:
        world.run("users")
    assert world.rows("sync_runs")[-1]["outcome"] == "refused"
    assert str(refused.value) == ("users: 3 of 7 linked records would be suspended (43%); the limit is 2 "
                                  "(max_remove_ratio 10% of 7 = 0, min_removals 2); "
                                  "if this is intended: --allow-removals 3")
    assert not any(world.ws_user(idnumber=f"P0000{i}")["suspended"] for i in (3, 4, 5))  # nothing applied
