"""The shipped mappings, and every kind of bad mapping with its own clear message."""

import shutil
from pathlib import Path

import pytest
import yaml

from bufsync.errors import ConfigError
from bufsync.mapping import load_mappings
from bufsync.paths import shipped_mappings_dir

CONTRACT_TABLES = {
    "buf_users", "buf_user_fields", "buf_courses", "buf_subscriptions", "buf_departments", "buf_students",
    "buf_staff", "buf_programs", "buf_learning_processes", "buf_batches", "buf_grades", "buf_achievements",
    "buf_lessons", "buf_chat_members",
}
DERIVED_TABLES = {"buf_process_enrolments"}  # filled by bufsync from the contract's tables, never by 1C


def test_shipped_mappings_cover_contract_v1() -> None:
    ms = load_mappings(shipped_mappings_dir())
    assert {m.table.name for m in ms if m.table.derived is None} == CONTRACT_TABLES
    assert {m.table.name for m in ms if m.table.derived is not None} == DERIVED_TABLES
    order = ms.order
    assert order.index("users") < order.index("subscriptions")
    assert order.index("courses") < order.index("subscriptions")
    assert order.index("departments") < order.index("courses")
    users = ms["users"]
    assert users.sync.on_missing == "suspend"
    assert users.sync.fields["password"].policy == "initial"
    assert [c.remote for c in users.sync.correlation] == ["idnumber", "username"]
    assert ms["subscriptions"].sync.on_missing == "suspend"
    assert ms.attached_to("users")[0].name == "user_fields"
    assert ms.load_markers().name == "batches"
    assert not ms["grades"].sync.inbound


def test_shipped_columns_match_the_contract_text() -> None:
    """Every column the contract names for buf_users exists with its type."""
    users = load_mappings(shipped_mappings_dir())["users"].table
    expected = {"external_id": "string(64)", "username": "string(100)", "email": "string(100)",
                "last_name": "string(100)", "first_name": "string(100)", "middle_name": "string(100)",
                "phone": "string(30)", "snils": "string(14)", "esia_id": "string(64)", "vk_id": "string(32)",
                "unti_id": "string(64)", "auth": "string(20)", "password": "string(255)", "status": "string(16)",
                "updated_at": "datetime"}
    assert {c.name: str(c.portable) for c in users.columns} == expected
    assert users.writeback.columns() == {"status": "sync_status", "error": "sync_error",
                                         "synced_at": "synced_at", "remote_id": "lms_id"}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    target = tmp_path / "maps"
    shutil.copytree(shipped_mappings_dir(), target)
    return target


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def problems(site: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_mappings(site)
    return str(err.value)


def test_malformed_yaml(site: Path) -> None:
    (site / "users.yaml").write_text("format: 1\nname: users\ntable: {name: buf_users\n", encoding="utf-8")
    text = problems(site)
    assert "users.yaml:" in text and "malformed YAML" in text


def test_unknown_key_with_line_and_accepted_keys(site: Path) -> None:
    text = (site / "courses.yaml").read_text(encoding="utf-8")
    text = text.replace("  on_missing: keep\n", "  on_missing: keep\n  on_misssing: keep\n")
    (site / "courses.yaml").write_text(text, encoding="utf-8")
    line = text.splitlines().index("  on_misssing: keep") + 1
    message = problems(site)
    assert f"courses.yaml:{line}: sync.on_misssing: unknown key; expected one of:" in message
    assert "on_missing" in message and "correlation" in message


def test_wrong_type_and_bad_choice(site: Path) -> None:
    edit(site / "users.yaml", lambda d: d["sync"]["guards"].update(max_remove_ratio="ten percent"))
    edit(site / "courses.yaml", lambda d: d["sync"]["fields"]["fullname"].update(policy="forse"))
    message = problems(site)
    assert "users.yaml:" in message and "sync.guards.max_remove_ratio: Input should be a valid number" in message
    assert "courses.yaml:" in message and "sync.fields.fullname.policy:" in message
    assert "'force', 'initial' or 'keep'" in message and "'forse'" in message


def test_hostile_identifier_is_rejected(site: Path) -> None:
    edit(site / "users.yaml", lambda d: d["table"].update(name="users; drop table x"))
    message = problems(site)
    assert "table.name: expected an identifier" in message
    assert "'users; drop table x'" in message


def test_hostile_column_name_and_bad_type(site: Path) -> None:
    def change(d):
        d["table"]["columns"][1]["name"] = 'x"; DELETE FROM buf_users; --'
        d["table"]["columns"][2]["type"] = "varchar(10)"
    edit(site / "users.yaml", change)
    message = problems(site)
    assert "table.columns.1.name: expected an identifier" in message
    assert "table.columns.2.type: unknown column type; expected one of string(n)" in message


def test_reference_to_missing_column(site: Path) -> None:
    edit(site / "users.yaml", lambda d: d["sync"]["fields"].update(firstname={"source": "given_name"}))
    message = problems(site)
    assert "sync.fields.firstname.source: no column 'given_name' in table buf_users" in message


def test_missing_required_key(site: Path) -> None:
    edit(site / "departments.yaml", lambda d: d["table"].pop("description"))
    assert "departments.yaml:" in (m := problems(site)) and "table.description: required key is missing" in m


def test_missing_key_column(site: Path) -> None:
    def change(d):
        for c in d["table"]["columns"]:
            c.pop("key", None)
    edit(site / "programs.yaml", change)
    assert "programs.yaml" in (m := problems(site)) and "no key column" in m


def test_unknown_mapping_reference(site: Path) -> None:
    edit(site / "subscriptions.yaml", lambda d: d["sync"].update(depends_on=["teachers"]))
    edit(site / "courses.yaml", lambda d: d["sync"]["fields"]["categoryid"].update(lookup="faculties"))
    message = problems(site)
    assert "subscriptions.yaml" in message and "sync.depends_on.0: unknown mapping 'teachers'" in message
    assert "sync.fields.categoryid.lookup: unknown mapping 'faculties'" in message


def test_dependency_cycle(site: Path) -> None:
    edit(site / "users.yaml", lambda d: d["sync"].update(depends_on=["subscriptions"]))
    assert "dependency cycle" in problems(site)


def test_name_must_match_file(site: Path) -> None:
    edit(site / "staff.yaml", lambda d: d.update(name="employees"))
    assert "staff.yaml" in (m := problems(site)) and "name: the name must match the file name 'staff'" in m


def test_overlapping_engine_and_1c_columns(site: Path) -> None:
    edit(site / "users.yaml", lambda d: d["table"]["writeback"].update(status="status"))
    assert "writeback.status: 'status' is also a column 1C writes" in problems(site)


def test_require_batch_without_load_markers(site: Path) -> None:
    (site / "batches.yaml").unlink()
    edit(site / "users.yaml", lambda d: d["sync"]["guards"].update(require_batch="users"))
    assert "no mapping declares load_markers" in problems(site)


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        load_mappings(tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"no \*.yaml mapping files"):
        load_mappings(tmp_path)


def test_group_by_must_lead_the_key(site: Path) -> None:
    edit(site / "subscriptions.yaml", lambda d: d["sync"].update(group_by=["course_external_id"]))
    message = problems(site)
    assert "subscriptions.yaml:" in message and "group_by must be the leading columns of key" in message


def test_outbound_tables_say_what_the_engine_fills(site: Path) -> None:
    """A table the engine writes: every required column is a field or a stamp, stamps are datetimes, 'mark'
    needs removed_at; an inbound table has no stamps and never 'mark'."""
    def outbound(data: dict) -> None:
        data["table"]["stamps"] = {"changed_at": "grade_text"}
        data["table"]["columns"].append({"name": "note", "type": "string(10)", "nullable": False,
                                         "description": "Примечание"})
        data["sync"]["on_missing"] = "mark"
        del data["sync"]["fields"]["user_external_id"]
    edit(site / "grades.yaml", outbound)
    text = problems(site)
    assert "grades.yaml" in text
    assert "table.stamps.changed_at: column 'grade_text' is string(100); a stamp is a datetime column" in text
    assert "column 'updated_at' is required but neither a field nor a stamp" in text
    assert "column 'note' is required but neither a field nor a stamp" in text
    assert "sync.on_missing: 'mark' needs table.stamps.removed_at" in text
    assert "sync.key.0: key column 'user_external_id' has no field" in text


def test_inbound_tables_have_no_stamps_and_never_mark(site: Path) -> None:
    edit(site / "courses.yaml", lambda d: d["table"].__setitem__("stamps", {"changed_at": "updated_at"}))
    assert "table.stamps: only a table the engine writes (an outbound sync) has stamps" in problems(site)
    edit(site / "courses.yaml", lambda d: (d["table"].pop("stamps"), d["sync"].__setitem__("on_missing", "mark")))
    assert "on_missing 'mark' is for a table the engine writes" in problems(site)


def test_a_derived_table_names_a_derivation_bufsync_ships_with_valid_options(site: Path) -> None:
    edit(site / "process_enrolments.yaml", lambda d: d["table"]["derived"].update(name="timetable"))
    message = problems(site)
    assert "process_enrolments.yaml" in message and "table.derived.name: unknown derivation 'timetable'" in message
    assert "known: learning_process_enrolments" in message
    edit(site / "process_enrolments.yaml", lambda d: d["table"]["derived"].update(
        name="learning_process_enrolments", options={"teacher_role": "", "tutor_role": "x"}))
    message = problems(site)
    assert "table.derived.options.teacher_role" in message and "table.derived.options.tutor_role" in message
    edit(site / "process_enrolments.yaml", lambda d: d["table"]["derived"].update(options={"teacher_role": "student"}))
    assert "teacher_role and student_role are both 'student'; they must differ" in problems(site)
    edit(site / "process_enrolments.yaml", lambda d: d["table"]["derived"].update(options={"students": "pupils"}))
    assert "table.derived.options.students: no synced mapping 'pupils' to read" in problems(site)


def test_group_with_names_a_grouped_mapping_of_the_same_entity(site: Path) -> None:
    edit(site / "process_enrolments.yaml", lambda d: d["sync"].update(group_with=["students", "nosuch"]))
    message = problems(site)
    assert "sync.group_with.0: 'students' groups its rows by nothing" in message
    assert "sync.group_with.1: unknown mapping 'nosuch'" in message
    edit(site / "process_enrolments.yaml", lambda d: d["sync"].update(group_with=["staff"]))
    assert "'staff' writes cohort_member, this mapping enrolment" in problems(site)


def test_group_with_goes_both_ways() -> None:
    ms = load_mappings(shipped_mappings_dir())
    assert [m.name for m in ms.grouped_with("subscriptions")] == ["process_enrolments"]
    assert [m.name for m in ms.grouped_with("process_enrolments")] == ["subscriptions"]
    assert ms.grouped_with("users") == []
