"""The README's first command, as a user runs it: `bufsync demo` in an empty directory."""

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa


def test_demo_in_an_empty_directory(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("bufsync")
    result = subprocess.run([str(exe), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Логин «соколова» недопустим" in out
    assert "Адрес почты «petrov@college» недопустим" in out
    assert "уже используется другой учётной записью Moodle" in out
    assert "Курс «IT-AI» не найден" in out
    assert "[new-2026-0002] error: Запись LMS id" in out and "(disputed)" in out
    assert "passport published: Программирование на Python (2026/27)" in out
    # grades back to 1C: the teacher's grades land in buf_grades; one changed exam rewrites two rows only
    assert "6. grades back to 1C: a teacher graded py-101 in Moodle" in out
    assert "`bufsync run grades` again: 2 updated, " in out
    assert " EXAM   67.00 of 100" in out
    assert "(moderation ok)" in out
    # Университет 2035: the four stages, then the footprint in the sandbox LRS and S3, each statement once
    assert "the four stages of `bufsync u2035 connect`: «Активен»" in out and "nothing new queued 0" in out
    footprint = out.split("8. Университет 2035", 1)[1]
    assert "submit " in footprint and "files in S3: 0;" not in footprint
    # the contingent: groups and departments as cohorts, before and after 1C's changes
    first, second = out.split("5. second sync:")
    assert "1c-ИС-21     Информационные системы-21" in first
    assert "1c-K-PO      Кафедра программного обеспечения" in first
    assert "1c-K-PO      Кафедра программного обеспечения     1 members" in second  # the dismissed teacher left
    assert "ИС-21 in py-101" in first and "ИБ-22 in net-301" in first  # learning processes as course groups
    # achievements: a cohort per kind, and a person's list in a profile field; 1C cancels one of them
    assert "1c-ach-OLYMP Победители олимпиад" in first
    header = "(profile field «achievements», core_user_get_users_by_field):"
    listed = [part.split(header, 1)[1].split("\n\n", 1)[0].strip().splitlines() for part in (first, second)]
    assert len(listed[0]) == 3 and set(listed[1]) < set(listed[0]), listed
    assert all(" — " in line for line in listed[0])
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'bufsync.db'}")
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT outcome FROM sync_runs WHERE kind = 'sync' ORDER BY id")).scalars().all()
        fixed = conn.execute(sa.text("SELECT sync_status FROM buf_users WHERE username = 'sokolova.ai'")).scalar_one()
        suspended = conn.execute(sa.text("SELECT count(*) FROM sync_ledger WHERE mapping_name = 'subscriptions' "
                                         "AND state = 'suspended'")).scalar_one()
        namesake = conn.execute(sa.text("SELECT sync_status, lms_id FROM buf_users "
                                        "WHERE external_id = 'new-2026-0002'")).one()
        created = conn.execute(sa.text("SELECT sync_status, lms_id FROM buf_users "
                                       "WHERE external_id = 'new-2026-0001'")).one()
        scos = conn.execute(sa.text("SELECT state, scos_id FROM sync_scos_courses")).one()
        students = conn.execute(sa.text("SELECT sync_status, count(*) FROM buf_students GROUP BY sync_status")).all()
        exam = conn.execute(sa.text("SELECT grade, removed_at FROM buf_grades WHERE item = 'EXAM' AND grade = 67"
                                    )).one()
        enrolled = conn.execute(sa.text("SELECT count(*) FROM v_queue_scos WHERE operation = 'participation_add' "
                                        "AND status = 'done'")).scalar_one()
        footprint = dict(conn.execute(sa.text("SELECT state, count(*) FROM sync_u2035_statements GROUP BY state")
                                      ).all())
    engine.dispose()
    assert runs == ["rejected", "rejected", "ok", "ok"]  # the two syncs, then the two grade reads of step 6
    assert students == [("ok", 270)]
    assert fixed == "ok"       # the Cyrillic login, fixed by 1C, went through on the second run
    assert suspended == 3      # the removed enrolments were suspended
    assert namesake == ("error", None) and created.sync_status == "ok" and created.lms_id
    assert scos.state == "published" and scos.scos_id
    assert exam.removed_at is None
    assert enrolled > 20 and f"learners enrolled on the portal: {enrolled};" in out
    assert set(footprint) == {"sent"} and f"each once: {footprint['sent']} (" in out
