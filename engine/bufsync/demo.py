"""`bufsync demo`: the whole main job on a laptop in under a minute.

A SQLite buffer filled like a real 1C export (Cyrillic names, departments, courses,
enrolments, and the rows real sites get wrong), the sandbox Moodle, a first sync with its
report, changes as 1C would make them, a second sync, and the difference.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bufsync import migrations
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.reconcile.context import Options
from bufsync.report import RunReport
from bufsync.runner import run
from bufsync.sandbox.moodle.run import start
from bufsync.schema import build_metadata

LAST = ["Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков",
        "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
        "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров"]
FIRST_M = ["Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Артём", "Илья", "Кирилл", "Михаил"]
FIRST_F = ["Анна", "Мария", "Елена", "Дарья", "Алина", "Ирина", "Екатерина", "Арина", "Полина", "Ольга"]
MIDDLE_M = ["Александрович", "Сергеевич", "Дмитриевич", "Андреевич", "Иванович", "Петрович"]
MIDDLE_F = ["Александровна", "Сергеевна", "Дмитриевна", "Андреевна", "Ивановна", "Петровна"]
TRANSLIT = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                    ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s",
                     "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"], strict=True))
COURSES = [("IT-PY", "py-101", "Программирование на Python", "K-PO"), ("IT-DB", "db-201", "Базы данных", "K-PO"),
           ("IT-NET", "net-301", "Компьютерные сети", "K-IB"), ("IT-SEC", "sec-401", "Защита информации", "K-IB"),
           ("EC-MIC", "mic-101", "Микроэкономика", "K-EC"), ("EC-FIN", "fin-201", "Финансы", "K-EC"),
           ("HM-HIS", "his-101", "История России", None), ("HM-PHIL", "phil-101", "Философия", None)]

ACHIEVEMENTS = [("OLYMP", "Победители олимпиад", ["Победитель олимпиады по математике", "Призёр олимпиады по физике",
                                                    "Победитель олимпиады по программированию"]),
                ("SPORT", "Спортивные достижения", ["Первое место в лыжной гонке", "Золотой знак ГТО",
                                                    "Кубок колледжа по волейболу"]),
                ("SCI", "Научные конференции", ["Доклад на студенческой конференции", "Статья в сборнике трудов"])]
LEVELS = ["вузовский", "региональный", "всероссийский"]
ACHIEVEMENTS_FIELD = "achievements"


def _latin(text: str) -> str:
    return "".join(TRANSLIT.get(c, c) for c in text.lower())


def dataset(people: int = 300, seed: int = 2026) -> dict[str, list[dict[str, Any]]]:
    rnd = random.Random(seed)
    users: list[dict[str, Any]] = []
    used: set[str] = set()
    for i in range(people):
        female = rnd.random() < 0.5
        last = rnd.choice(LAST) + ("а" if female else "")
        first = rnd.choice(FIRST_F if female else FIRST_M)
        middle = rnd.choice(MIDDLE_F if female else MIDDLE_M)
        login = f"{_latin(last)}.{_latin(first)[0]}{_latin(middle)[0]}"
        while login in used:
            login += str(rnd.randint(0, 9))
        used.add(login)
        users.append({"external_id": f"{rnd.getrandbits(32):08x}-1c{i:04d}", "username": login,
                      "email": f"{login}@college.example", "last_name": last, "first_name": first,
                      "middle_name": middle, "phone": f"+7 9{rnd.randint(10, 99)} {rnd.randint(100, 999)}-"
                                                      f"{rnd.randint(10, 99)}-{rnd.randint(10, 99)}",
                      "snils": f"{rnd.randint(100, 999)}-{rnd.randint(100, 999)}-{rnd.randint(100, 999)} "
                               f"{rnd.randint(10, 99)}",
                      "status": "active"})
    # what real sites get wrong
    users[1]["username"] = "Соколова"            # a Cyrillic login
    users[2]["email"] = "petrov@college"          # a broken e-mail (no domain zone)
    users[3]["email"] = users[4]["email"].upper()  # the same e-mail twice, differing in case
    departments: list[dict[str, Any]] = [
        {"external_id": "UNIV", "parent_external_id": None, "name": "Колледж", "code": "00", "status": "active"},
        {"external_id": "F-IT", "parent_external_id": "UNIV", "name": "Отделение информационных технологий",
         "code": "10", "status": "active"},
        {"external_id": "K-PO", "parent_external_id": "F-IT", "name": "Кафедра программного обеспечения",
         "code": "11", "status": "active"},
        {"external_id": "K-IB", "parent_external_id": "F-IT", "name": "Кафедра информационной безопасности",
         "code": "12", "status": "active"},
        {"external_id": "K-EC", "parent_external_id": "UNIV", "name": "Кафедра экономики", "code": "20",
         "status": "active"},
    ]
    courses = [{"external_id": ext, "shortname": short, "fullname": f"{name} (2026/27)",
                "category_external_id": dep, "start_date": date(2026, 9, 1), "end_date": date(2027, 1, 31),
                "visible": True} for ext, short, name, dep in COURSES]
    subscriptions = []
    for user in users:
        for course in rnd.sample(COURSES, 3):
            subscriptions.append({"user_external_id": user["external_id"], "course_external_id": course[0],
                                  "role": "student", "time_start": datetime(2026, 9, 1, 8, 0),
                                  "time_end": None, "status": "active"})
    for index, course in enumerate(COURSES):
        subscriptions.append({"user_external_id": users[10 + index]["external_id"], "course_external_id": course[0],
                              "role": "editingteacher", "time_start": None, "time_end": None, "status": "active"})
    subscriptions.append({"user_external_id": users[20]["external_id"], "course_external_id": "IT-AI",
                          "role": "student", "time_start": None, "time_end": None, "status": "active"})  # unknown
    # the contingent: students in academic groups (every status), staff in departments, programs
    groups = [("ИС-21", "Информационные системы-21", "K-PO"), ("ИБ-22", "Информационная безопасность-22", "K-IB"),
              ("ЭК-23", "Экономика-23", "K-EC")]
    statuses = ["studying"] * 16 + ["academic_leave", "expelled", "graduated"]
    students = [{"person_external_id": user["external_id"], "record_book": f"ЗК-{index:05d}",
                 "group_code": groups[index % 3][0], "group_name": groups[index % 3][1], "study_year": 2,
                 "education_form": "очная", "department_external_id": groups[index % 3][2],
                 "status": rnd.choice(statuses)} for index, user in enumerate(users[30:], start=30)]
    staff = [{"person_external_id": users[10 + index]["external_id"], "position": "преподаватель",
              "department_external_id": course[3] or "UNIV", "status": "working"}
             for index, course in enumerate(COURSES)]
    staff.append({"person_external_id": users[10]["external_id"], "position": "методист",
                  "department_external_id": "F-IT", "status": "working"})  # one person, two departments
    programs = [{"external_id": f"P-{code}", "name": name, "speciality_code": code, "education_form": "очная",
                 "department_external_id": dep} for code, name, dep in
                (("09.02.07", "Информационные системы и программирование", "K-PO"),
                 ("10.02.05", "Обеспечение информационной безопасности", "K-IB"),
                 ("38.02.01", "Экономика и бухгалтерский учёт", "K-EC"))]
    processes = [{"external_id": f"УП-{group}-{course[0]}", "group_code": group, "course_external_id": course[0],
                  "teacher_external_id": users[10 + index]["external_id"], "semester": 1,
                  "start_date": date(2026, 9, 1), "end_date": date(2026, 12, 30), "program_external_id": None}
                 for index, (group, course) in enumerate([("ИС-21", COURSES[0]), ("ИС-21", COURSES[1]),
                                                          ("ИБ-22", COURSES[2]), ("ЭК-23", COURSES[4])])]
    # the portfolio: a few students' achievements (drawn last, so the rest of the data set stays as it was)
    achievements = []
    for index, user in enumerate(users[30:60:3], start=1):
        for number in range(1 + index % 3):
            code, kind, titles = ACHIEVEMENTS[(index + number) % len(ACHIEVEMENTS)]
            achievements.append({
                "person_external_id": user["external_id"], "type_code": code,
                "achievement_id": f"ДСТ-{index:03d}-{number}", "type_name": kind, "title": rnd.choice(titles),
                "achieved_on": date(2026, rnd.randint(1, 6), rnd.randint(1, 28)), "level": rnd.choice(LEVELS),
                "document": f"диплом №{rnd.randint(100, 999)}" if number % 2 == 0 else None,
                "points": rnd.choice([None, 5, 10, 2.5]), "status": "active"})
    return {"buf_users": users, "buf_departments": departments, "buf_courses": courses,
            "buf_subscriptions": subscriptions, "buf_students": students, "buf_staff": staff,
            "buf_programs": programs, "buf_learning_processes": processes, "buf_achievements": achievements}


def _scos(loaded: Any, server: Any, data: dict[str, list[dict[str, Any]]], echo: Callable[[str], None]) -> None:
    """Step 6: a course published to the sandbox СЦОС, its learners with an ЕСИА id enrolled there."""
    import time

    from bufsync.adapters.moodle.client import MoodleClient
    from bufsync.portals import with_section
    from bufsync.portals.runs import run_dispatch, run_portal
    from bufsync.portals.scos.settings import ScosSettings
    from bufsync.sandbox.scos.portal import Portal, PortalServer, SandboxConfig
    portal = PortalServer(Portal(SandboxConfig(moderation_seconds=1.0)), port=0)
    portal.serve_in_thread()
    try:
        loaded.settings = with_section(loaded.settings, "scos", ScosSettings(
            url=f"{portal.url}/api/v2", key=portal.portal.config.key, partner_id=portal.portal.config.partner_id,
            institution="demo-college", passport={
                "content": "Лекции, лабораторные работы, итоговый проект", "results": "Пишет программы на Python",
                "competences": "ОПК-2\nПК-1", "requirements": ["Информатика, школьный курс"],
                "direction": ["09.02.07"], "credits": 4}))
        for shortname, name, kind in (("scos_publish", "Публиковать в СЦОС", "checkbox"),
                                      ("scos_id", "Идентификатор СЦОС", "text")):
            server.site.admin("create_course_customfield", {"shortname": shortname, "name": name, "type": kind})
        engine = sa.create_engine(loaded.buffer_url)
        users = build_metadata(load_mappings(loaded.mappings_dir)).tables["buf_users"]
        with engine.begin() as conn:  # 1C fills in the ЕСИА ids it has (two people in three)
            for index, user in enumerate(data["buf_users"]):
                if index % 3:
                    conn.execute(users.update().where(users.c.external_id == user["external_id"])
                                 .values(esia_id=f"esia-{index:05d}"))
        engine.dispose()
        with MoodleClient.connect(server.url, server.site.config.token) as client:
            course = client.get_courses_by_field("shortname", "py-101")[0]
            client.update_courses([{"id": course["id"], "summary": "<p>Основы программирования на Python</p>",
                                    "customfields": [{"shortname": "scos_publish", "value": 1}]}])
        echo(f"\n7. ГИС СЦОС (sandbox at {portal.url}): py-101 marked «Публиковать в СЦОС» in Moodle")
        run_portal(loaded, "scos")
        run_dispatch(loaded, "scos")
        run_portal(loaded, "scos")
        time.sleep(1.1)  # the portal's moderation
        report = run_portal(loaded, "scos")
        delivered = run_dispatch(loaded, "scos")
        run_portal(loaded, "scos")
        state = portal.portal.snapshot()
        published = state["courses"][0]
        echo(f"   passport published: {published['title']} -> {published['id']} (moderation {published['moderation']})")
        echo(f"   learners enrolled on the portal: {len(state['participation'])}; without an ЕСИА id, not sent: "
             f"{report.counts.get('enrol.no_identity', 0)}; queue items delivered: {delivered.counts['done']}")
    finally:
        portal.shutdown()
        portal.server_close()


def _u2035(directory: Path, env: dict[str, str], server: Any, data: dict[str, list[dict[str, Any]]],
           echo: Callable[[str], None]) -> None:
    """Step 8: the learners' footprint (py-101's submissions with their files) to the sandbox LRS and S3 of
    Университет 2035, after the four stages."""
    from collections import Counter

    from bufsync.adapters.moodle.client import MoodleClient
    from bufsync.portals.runs import run_dispatch, run_portal
    from bufsync.portals.u2035 import connection
    from bufsync.portals.u2035.sandbox import start_both
    emulator = start_both({"lrs_port": 0, "s3_port": 0}, None)
    try:
        found = {k.removeprefix("BUFSYNC_U2035_").lower(): v for k, v in emulator.variables.items()}
        config = directory / "u2035.yaml"  # the wizard writes the answers here, as into a site's bufsync.yaml
        config.write_text("portals:\n  u2035:\n    organisation: ГБПОУ «Колледж связи»\n"
                          "    contact: Иванова А. А., it@college.example\n    project: Цифровой след\n",
                          encoding="utf-8")
        loaded = load_settings(config, env)
        engine = sa.create_engine(loaded.buffer_url)
        users = build_metadata(load_mappings(loaded.mappings_dir)).tables["buf_users"]
        with engine.begin() as conn:  # 1C fills in the UNTI ids it has (one person in two)
            for index, user in enumerate(data["buf_users"]):
                if index % 2 == 0:
                    conn.execute(users.update().where(users.c.external_id == user["external_id"])
                                 .values(unti_id=str(1_000_000 + index)))
        engine.dispose()
        server.site.admin("service", {"downloadfiles": True})  # «Can download files»: submissions' files
        with MoodleClient.connect(server.url, server.site.config.token) as client:
            course = client.get_courses_by_field("shortname", "py-101")[0]
            lab = client.assignments([int(course["id"])])[0]
        server.site.admin("fill_submissions", {"assignmentid": int(lab["id"]), "files": 1, "size": 20_000})
        state = connection.connect(loaded, connection.Scripted(found, True, out=lambda _: None, every=True))
        loaded = load_settings(config, env)  # with the answers connect wrote into the file
        echo(f"\n8. Университет 2035 (sandbox LRS and S3): the four stages of `bufsync u2035 connect`: «{state.text}»")
        run_portal(loaded, "u2035")
        delivered = run_dispatch(loaded, "u2035")
        again = run_portal(loaded, "u2035")
        lrs, s3 = emulator.server.lrs.lrs, emulator.server.s3.store
        verbs = Counter(s["verb"]["id"].rsplit("/", 1)[1] for s in lrs.all()
                        if s["actor"]["account"]["name"] != connection.PROBE_ACTOR)
        echo(f"   statements in the LRS, each once: {sum(verbs.values())} ("
             + ", ".join(f"{verb} {n}" for verb, n in sorted(verbs.items())) + f"); files in S3: "
             f"{len(s3.buckets['footprint'].objects)}; queue items delivered: {delivered.counts['done']}; a run with "
             f"nothing new queued {again.counts.get('queued', 0)}")
    finally:
        emulator.shutdown()
        emulator.server_close()


def _grades(loaded: Any, server: Any, echo: Callable[[str], None]) -> None:
    """Step 6: a teacher grades in Moodle; buf_grades gets what Moodle's gradebook says, and after one grade is
    changed, only the rows that changed are written again (their updated_at moves; 1C reads by it)."""
    from bufsync.adapters.moodle.client import MoodleClient
    with MoodleClient.connect(server.url, server.site.config.token) as client:
        course = next(c for c in client.get_courses_by_field("shortname", "py-101"))
        students = [u for u in client.get_enrolled_users(int(course["id"]), onlyactive=True,
                                                         userfields="id,username,idnumber,roles")
                    if any(r["shortname"] == "student" for r in u.get("roles", []))][:3]
    site, courseid = server.site, int(course["id"])
    site.admin("create_assignment", {"courseid": courseid, "name": "Лабораторная работа 1", "idnumber": "LAB1"})
    site.admin("create_grade_item", {"courseid": courseid, "itemname": "Экзамен", "idnumber": "EXAM",
                                     "gradepass": 60})
    for student, (lab, exam) in zip(students, ((95, 88), (72, 61), (40, None)), strict=False):
        site.admin("set_grade", {"courseid": courseid, "idnumber": "LAB1", "userid": student["id"], "grade": lab})
        if exam is not None:
            site.admin("set_grade", {"courseid": courseid, "idnumber": "EXAM", "userid": student["id"], "grade": exam})
    site.admin("set_completion_criteria", {"courseid": courseid, "criteria": [{"type": "self"}], "enable": True})
    site.admin("mark_completion", {"courseid": courseid, "userid": students[0]["id"], "criteria": ["self"],
                                   "aggregate": True})
    first = run(loaded, ["grades"], Options())
    echo(f"\n6. grades back to 1C: a teacher graded py-101 in Moodle and {students[0]['username']} completed it; "
         f"`bufsync run grades`: {_grade_counts(first)}")
    site.admin("set_grade", {"courseid": courseid, "idnumber": "EXAM", "userid": students[2]["id"], "grade": 67})
    second = run(loaded, ["grades"], Options())
    echo(f"   the teacher grades {students[2]['username']}'s exam; `bufsync run grades` again: "
         f"{_grade_counts(second)}; their rows in buf_grades now (updated_at moved on the changed ones only):")
    mappings = load_mappings(loaded.mappings_dir)
    grades = build_metadata(mappings).tables["buf_grades"]
    engine = sa.create_engine(loaded.buffer_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(grades).where(grades.c.course_external_id == course["idnumber"],
                                                    grades.c.user_external_id == students[2]["idnumber"])
                            .order_by(grades.c.item)).all()
        done = conn.execute(sa.select(grades.c.completed_at).where(
            grades.c.course_external_id == course["idnumber"], grades.c.user_external_id == students[0]["idnumber"],
            grades.c.item == "course")).scalar_one()
    engine.dispose()
    echo(f"     {students[0]['idnumber']} course completed_at {done}")
    for row in rows:
        grade = "—" if row.grade is None else f"{row.grade:.2f}"
        echo(f"     {row.user_external_id} {row.item:<6} {grade} of {row.grade_max:.0f}, updated_at {row.updated_at}")


def _grade_counts(report: RunReport) -> str:
    counts = next(m.counts for m in report.mappings if m.mapping == "grades")
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "nothing"


def _cohorts(server: Any) -> str:
    """The cohorts in Moodle, as its Web Services answer: what the contingent became."""
    from bufsync.adapters.moodle.client import MoodleClient
    with MoodleClient.connect(server.url, server.site.config.token) as client:
        found = client.call("core_cohort_get_cohorts", {})
        ids = [int(c["id"]) for c in found]
        members = {int(m["cohortid"]): len(m["userids"])
                   for m in client.call("core_cohort_get_cohort_members", {"cohortids": ids})} if ids else {}
        courses = {int(c["id"]): c["shortname"] for c in client.get_courses_by_field()}
        groups = [(courses[courseid], g) for courseid in sorted(courses)
                  for g in client.call("core_group_get_course_groups", {"courseid": courseid})]
        held = {int(g["groupid"]): len(g["userids"])
                for g in client.get_group_members([int(g["id"]) for _, g in groups])} if groups else {}
    lines = ["   cohorts in Moodle (core_cohort_get_cohorts):"]
    lines += [f"     {c['idnumber']:<12} {c['name']:<34} {members.get(int(c['id']), 0):>3} members"
              for c in sorted(found, key=lambda c: c["idnumber"])]
    lines.append("   course groups of the learning processes (students and teacher enrolled, members): "
                 + ", ".join(f"{g['name']} in {course} ({held.get(int(g['id']), 0)})" for course, g in groups))
    return "\n".join(lines)


def _achievements(server: Any, person: dict[str, Any]) -> str:
    """One person's list of achievements, as Moodle's Web Services answer (the profile field the setting names)."""
    from bufsync.adapters.moodle.client import MoodleClient
    with MoodleClient.connect(server.url, server.site.config.token) as client:
        user = client.get_users_by_field("idnumber", [person["external_id"]])[0]
    value = next((c["value"] for c in user.get("customfields", []) if c["shortname"] == ACHIEVEMENTS_FIELD), "")
    lines = [f"   achievements of {user['username']} (profile field «{ACHIEVEMENTS_FIELD}», "
             "core_user_get_users_by_field):"]
    return "\n".join(lines + ([f"     {line}" for line in value.splitlines()] or ["     (none)"]))


def demo(directory: Path, people: int = 300, echo: Callable[[str], None] = print) -> tuple[RunReport, RunReport]:
    directory.mkdir(parents=True, exist_ok=True)
    buffer = directory / "bufsync.db"
    if buffer.exists():
        buffer.unlink()
    server = start(port=0, data=None)
    try:
        env = {"BUFSYNC_BUFFER_URL": f"sqlite:///{buffer.as_posix()}", "BUFSYNC_MOODLE_URL": server.url,
               "BUFSYNC_MOODLE_TOKEN": server.site.config.token,
               "BUFSYNC_MOODLE_ACHIEVEMENTS_PROFILE_FIELD": ACHIEVEMENTS_FIELD}
        loaded = load_settings(None, env)
        mappings = load_mappings(loaded.mappings_dir)
        migrations.upgrade(loaded, mappings)
        server.site.admin("create_profile_field", {"shortname": "snils", "name": "СНИЛС"})
        server.site.admin("create_profile_field", {"shortname": ACHIEVEMENTS_FIELD, "name": "Достижения",
                                                   "datatype": "textarea"})
        engine = sa.create_engine(env["BUFSYNC_BUFFER_URL"])
        tables = build_metadata(mappings).tables
        data = dataset(people)
        with engine.begin() as conn:
            for table, rows in data.items():
                conn.execute(tables[table].insert(), rows)
        echo(f"1. buffer {buffer}: {len(data['buf_users'])} people, {len(data['buf_departments'])} departments, "
             f"{len(data['buf_courses'])} courses, {len(data['buf_subscriptions'])} enrolments, "
             f"{len(data['buf_students'])} students in 3 academic groups, {len(data['buf_staff'])} staff positions, "
             f"{len(data['buf_programs'])} programs, {len(data['buf_learning_processes'])} learning processes, "
             f"{len(data['buf_achievements'])} achievements, written as 1C would")
        echo(f"2. sandbox Moodle at {server.url}")
        echo("3. first sync:\n")
        first = run(loaded, [], Options())
        echo(first.render(errors_shown=10))
        echo(_cohorts(server))
        laureate = max(data["buf_users"], key=lambda u: sum(a["person_external_id"] == u["external_id"]
                                                            for a in data["buf_achievements"]))
        echo(_achievements(server, laureate))
        users, subs = tables["buf_users"], tables["buf_subscriptions"]
        students, staff = tables["buf_students"], tables["buf_staff"]
        achievements = tables["buf_achievements"]
        studying = [r for r in data["buf_students"] if r["status"] == "studying"]
        with engine.begin() as conn:
            conn.execute(users.update().where(users.c.external_id == data["buf_users"][1]["external_id"])
                         .values(username="sokolova.ai"))
            conn.execute(users.update().where(users.c.external_id == data["buf_users"][5]["external_id"])
                         .values(last_name=data["buf_users"][5]["last_name"] + "-Орлова"))
            conn.execute(users.update().where(users.c.external_id == data["buf_users"][6]["external_id"])
                         .values(status="suspended"))
            conn.execute(subs.delete().where(subs.c.user_external_id == data["buf_users"][7]["external_id"]))
            conn.execute(students.update().where(students.c.record_book == studying[0]["record_book"])
                         .values(status="expelled"))
            moved = studying[1]
            target = next(g for g in ("ИС-21", "ИБ-22") if g != moved["group_code"])
            conn.execute(students.update().where(students.c.record_book == moved["record_book"])
                         .values(group_code=target, group_name=next(r["group_name"] for r in data["buf_students"]
                                                                    if r["group_code"] == target)))
            conn.execute(staff.update().where(staff.c.person_external_id == data["buf_users"][11]["external_id"])
                         .values(status="dismissed"))
            cancelled = next(a for a in data["buf_achievements"] if a["person_external_id"] == laureate["external_id"])
            conn.execute(achievements.update().where(achievements.c.achievement_id == cancelled["achievement_id"])
                         .values(status="cancelled"))
            conn.execute(users.insert(), [
                {"external_id": "new-2026-0001", "username": "novikova.elena",
                 "email": "novikova.elena@college.example",
                 "last_name": "Новикова", "first_name": "Елена", "middle_name": "Андреевна", "status": "active"},
                # a namesake: 1C gave her the login of another person's account; it must never be taken over
                {"external_id": "new-2026-0002", "username": "novikova.ea", "email": "novikova.ea2@college.example",
                 "last_name": "Новикова", "first_name": "Евгения", "middle_name": "Алексеевна", "status": "active"}])
        engine.dispose()
        echo("\n4. 1C changes: the Cyrillic login fixed, a surname changed, a student suspended (академ),"
             " one student's enrolments removed, a new student added, and a namesake given another person's login"
             " (disputed: that account is never taken over); a student expelled, one moved to another group,"
             " a teacher dismissed, an achievement cancelled")
        echo("5. second sync:\n")
        second = run(loaded, [], Options())
        echo(second.render(errors_shown=10))
        echo(_cohorts(server))
        echo(_achievements(server, laureate))
        _grades(loaded, server, echo)
        _scos(loaded, server, data, echo)
        _u2035(directory, env, server, data, echo)
        echo("\nThe buffer keeps what happened to every row (sqlite3 bufsync.db):\n"
             "  SELECT external_id, sync_status, sync_error, lms_id FROM buf_users WHERE sync_status <> 'ok';\n"
             "  SELECT id, outcome, counts FROM sync_runs;\n"
             "  SELECT person_external_id, group_code, status, sync_status FROM buf_students;\n"
             "  SELECT process_external_id, user_external_id, role, sync_status FROM buf_process_enrolments;\n"
             "  SELECT person_external_id, achievement_id, status, sync_status FROM buf_achievements;\n"
             "  SELECT course_id, shortname, state, scos_id FROM sync_scos_courses;\n"
             "  SELECT operation, status, user_id, last_error FROM v_queue_scos;\n"
             "  SELECT kind, state, count(*) FROM sync_u2035_statements GROUP BY kind, state;\n"
             "Try it yourself: `bufsync sandbox` in one shell; in another, paste the export lines it prints, then\n"
             "  bufsync db upgrade && bufsync run")
        return first, second
    finally:
        server.shutdown()
        server.server_close()
        server.site.close()
