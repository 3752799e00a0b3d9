"""The sandbox's cohorts and groups (functions/cohorts.py, functions/groups.py).

The recorded exchanges are covered by the contract replay; these tests cover what the recording
does not show, following Moodle 4.5 (cohort/externallib.php, group/externallib.php, group/lib.php).
State is built through the sandbox's own web-service functions, as a client would.
"""

from __future__ import annotations

import json
from typing import Any

from bufsync.sandbox.moodle.functions.cohorts import cohort_member_ids
from bufsync.sandbox.moodle.functions.groups import course_groups, group_member_ids
from bufsync.sandbox.moodle.site import Site

TOKEN = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"


def call(site: Site, function: str, _token: str = TOKEN, **fields: Any) -> Any:
    """One REST call; keyword names use PHP's bracket syntax with '__' for '][' (users__0__username)."""
    pairs = [("wstoken", _token), ("wsfunction", function), ("moodlewsrestformat", "json")]
    for name, value in fields.items():
        parts = name.split("__")
        key = parts[0] + "".join(f"[{p}]" for p in parts[1:])
        pairs.append((key, str(value)))
    body = site.call(pairs).body
    return None if body == b"null" else json.loads(body)


def error(result: Any) -> tuple[str, str]:
    assert isinstance(result, dict) and "exception" in result, result
    return result.get("errorcode"), result.get("debuginfo") or result["message"]


def make_user(site: Site, username: str, lastname: str, firstname: str = "Test") -> int:
    result = call(site, "core_user_create_users", users__0__username=username, users__0__password="Lab#Pass2026",
                  users__0__firstname=firstname, users__0__lastname=lastname,
                  users__0__email=f"{username}@example.com")
    return result[0]["id"]


def make_category(site: Site, name: str, idnumber: str, parent: int = 0) -> int:
    result = call(site, "core_course_create_categories", categories__0__name=name, categories__0__parent=parent,
                  categories__0__idnumber=idnumber)
    return result[0]["id"]


def make_course(site: Site, shortname: str, category: int = 1) -> int:
    result = call(site, "core_course_create_courses", courses__0__fullname=shortname, courses__0__shortname=shortname,
                  courses__0__categoryid=category)
    return result[0]["id"]


def enrol(site: Site, userid: int, courseid: int, roleid: int = 5, suspend: int = 0) -> None:
    assert call(site, "enrol_manual_enrol_users", enrolments__0__roleid=roleid, enrolments__0__userid=userid,
                enrolments__0__courseid=courseid, enrolments__0__suspend=suspend) is None


def create_cohort(site: Site, name: str, idnumber: str, kind: str = "system", value: str = "") -> Any:
    return call(site, "core_cohort_create_cohorts", cohorts__0__categorytype__type=kind,
                cohorts__0__categorytype__value=value, cohorts__0__name=name, cohorts__0__idnumber=idnumber)


# --- cohorts ----------------------------------------------------------------------------------------

def test_an_empty_idnumber_is_taken_too(site: Site) -> None:
    assert create_cohort(site, "A", "")[0]["idnumber"] == ""
    assert error(create_cohort(site, "B", "")) == ("invalidparameter", "record already exists: idnumber=")


def test_category_by_id_must_be_an_integer_for_postgresql(site: Site) -> None:
    code, debuginfo = error(create_cohort(site, "A", "A1", "id", "abc"))
    assert code == "dmlreadexception"
    assert debuginfo.startswith('ERROR:  invalid input syntax for type bigint: "abc"')
    assert error(create_cohort(site, "A", "A1", "id", "99"))[1] == "category not exists: category id = 99"
    assert error(create_cohort(site, "A", "A1", "name", "x"))[1] == "category type must be id, idnumber or system:name"


def test_add_members_warnings_and_errors(site: Site) -> None:
    uid = make_user(site, "alice", "Alpha")
    create_cohort(site, "A", "A1")
    result = call(site, "core_cohort_add_cohort_members", members__0__cohorttype__type="name",
                  members__0__cohorttype__value="A", members__0__usertype__type="id", members__0__usertype__value=uid)
    assert result == {"warnings": [{"warningcode": "1", "message": "invalid parameter: cohortype=name"}]}
    # A cohort id that is not a number fails the query: the whole call becomes moodle_exception 'Error'.
    result = call(site, "core_cohort_add_cohort_members", members__0__cohorttype__type="id",
                  members__0__cohorttype__value="x1", members__0__usertype__type="id", members__0__usertype__value=uid)
    assert result == {"exception": "core\\exception\\moodle_exception", "errorcode": "Error", "message": "cohort/Error"}
    result = call(site, "core_cohort_add_cohort_members", members__0__cohorttype__type="id",
                  members__0__cohorttype__value=" 1", members__0__usertype__type="username",
                  members__0__usertype__value="alice")
    assert result == {"warnings": []}
    assert cohort_member_ids(site, 1) == [uid]


def test_members_are_ordered_by_lastname_then_firstname(site: Site) -> None:
    ids = [make_user(site, "u1", "Zed"), make_user(site, "u2", "alpha", "Bob"), make_user(site, "u3", "Alpha", "Al")]
    create_cohort(site, "A", "A1")
    fields = {}
    for i, uid in enumerate(ids):
        fields.update({f"members__{i}__cohorttype__type": "id", f"members__{i}__cohorttype__value": "1",
                       f"members__{i}__usertype__type": "id", f"members__{i}__usertype__value": uid})
    call(site, "core_cohort_add_cohort_members", **fields)
    assert call(site, "core_cohort_get_cohort_members", cohortids__0=1) == [
        {"cohortid": 1, "userids": [ids[2], ids[1], ids[0]]}]


def test_delete_members_of_an_unknown_user_is_an_error(site: Site) -> None:
    create_cohort(site, "A", "A1")
    code, debuginfo = error(call(site, "core_cohort_delete_cohort_members", members__0__cohortid=1,
                                 members__0__userid=999))
    assert code == "invaliduser"
    assert debuginfo == "SELECT * FROM {user} WHERE id = ? AND deleted = ? AND mnethostid = ?\n" \
                        "[array (\n  0 => 999,\n  1 => 0,\n  2 => '1',\n)]"


def test_search_paging_treats_limitfrom_as_a_page(site: Site) -> None:
    for i in range(5):
        create_cohort(site, f"Cohort {i}", f"C{i}")
    found = call(site, "core_cohort_search_cohorts", query="Cohort", context__contextid=1, includes="all",
                 limitfrom=1, limitnum=2)
    assert [c["name"] for c in found["cohorts"]] == ["Cohort 2", "Cohort 3"]
    # '0' is empty() in PHP: no filter at all.
    assert len(call(site, "core_cohort_search_cohorts", query="0", context__contextid=1)["cohorts"]) == 5
    result = call(site, "core_cohort_search_cohorts", query="x", context__contextid=1, includes="bogus")
    assert result["errorcode"] == "codingerror"
    assert result["message"].endswith("Invalid parameter value for 'includes'.")
    assert error(call(site, "core_cohort_search_cohorts", query="x", context__contextid=99999)) == \
        ("invalidparameter", "Context does not exist")
    assert error(call(site, "core_cohort_search_cohorts", query="x", context__contextlevel="planet",
                      context__instanceid=1)) == ("invalidparameter", "Invalid context level = planet")


def test_search_in_a_category_with_parents(site: Site) -> None:
    top = make_category(site, "Top", "TOP")
    child = make_category(site, "Child", "CHILD", top)
    create_cohort(site, "In child", "K1", "idnumber", "CHILD")
    create_cohort(site, "In top", "K2", "id", str(top))
    create_cohort(site, "In system", "K3")
    names = lambda r: [c["name"] for c in r["cohorts"]]  # noqa: E731
    found = call(site, "core_cohort_search_cohorts", query="In", context__contextlevel="coursecat",
                 context__instanceid=child, includes="parents")
    assert names(found) == ["In child", "In system", "In top"]
    found = call(site, "core_cohort_search_cohorts", query="In", context__contextlevel="coursecat",
                 context__instanceid=child, includes="self")
    assert names(found) == ["In child"]


def test_update_and_delete_cohorts(site: Site) -> None:
    make_category(site, "Top", "TOP")
    create_cohort(site, "A", "A1")
    assert call(site, "core_cohort_update_cohorts", cohorts__0__id=1, cohorts__0__categorytype__type="idnumber",
                cohorts__0__categorytype__value="TOP", cohorts__0__name="Renamed", cohorts__0__idnumber="A2",
                cohorts__0__visible=0) is None
    cohort = call(site, "core_cohort_get_cohorts")[0]
    assert (cohort["name"], cohort["idnumber"], cohort["visible"]) == ("Renamed", "A2", False)
    assert error(call(site, "core_cohort_update_cohorts", cohorts__0__id=1, cohorts__0__categorytype__type="system",
                      cohorts__0__categorytype__value="", cohorts__0__name="  ", cohorts__0__idnumber="A2")) == \
        ("invalidparameter", "Invalid cohort name")
    assert error(call(site, "core_cohort_update_cohorts", cohorts__0__id=1, cohorts__0__categorytype__type="idnumber",
                      cohorts__0__categorytype__value="NOPE", cohorts__0__name="X", cohorts__0__idnumber="A2"))[1] == \
        "category not exists: category=NOPE"
    assert call(site, "core_cohort_delete_cohorts", cohortids__0=1) is None
    assert call(site, "core_cohort_get_cohorts") == []
    assert error(call(site, "core_cohort_delete_cohorts", cohortids__0=1))[0] == "invalidrecord"


def test_deleting_a_user_or_a_category_cleans_up(site: Site) -> None:
    uid = make_user(site, "alice", "Alpha")
    top = make_category(site, "Top", "TOP")
    child = make_category(site, "Child", "CHILD", top)
    create_cohort(site, "A", "A1", "idnumber", "CHILD")
    call(site, "core_cohort_add_cohort_members", members__0__cohorttype__type="id", members__0__cohorttype__value="1",
         members__0__usertype__type="id", members__0__usertype__value=uid)
    assert call(site, "core_user_delete_users", userids__0=uid) is None
    assert cohort_member_ids(site, 1) == []
    call(site, "core_course_delete_categories", categories__0__id=child, categories__0__recursive=1)
    found = call(site, "core_cohort_search_cohorts", query="A", context__contextlevel="coursecat",
                 context__instanceid=top, includes="self")
    assert [c["name"] for c in found["cohorts"]] == ["A"]


# --- groups -----------------------------------------------------------------------------------------

def test_group_lifecycle(site: Site) -> None:
    courseid = make_course(site, "G-1")
    uid = make_user(site, "alice", "Alpha")
    enrol(site, uid, courseid)
    created = call(site, "core_group_create_groups", groups__0__courseid=courseid, groups__0__name="  Spaced  ",
                   groups__0__description="line1\nline2", groups__0__descriptionformat=2, groups__0__enrolmentkey="k",
                   groups__0__visibility=2)
    assert created[0]["name"] == "Spaced"
    assert (created[0]["enrolmentkey"], created[0]["participation"], created[0]["visibility"]) == ("k", False, 2)
    groupid = created[0]["id"]
    group = call(site, "core_group_get_groups", groupids__0=groupid)[0]
    assert group["description"] == "line1<br />\nline2" and group["descriptionformat"] == 1
    assert group["customfields"] == []
    assert call(site, "core_group_add_group_members", members__0__groupid=groupid, members__0__userid=uid) is None
    assert error(call(site, "core_group_update_groups", groups__0__id=groupid, groups__0__name="Spaced",
                      groups__0__visibility=0))[1] == \
        "The visibility of this group cannot be changed as it currently has members."
    result = call(site, "core_group_update_groups", groups__0__id=groupid, groups__0__name="Spaced",
                  groups__0__visibility="abc")
    assert result["exception"] == "TypeError" and "errorcode" not in result
    assert call(site, "core_group_delete_groups", groupids__0=groupid, groupids__1=99999) is None
    assert course_groups(site, courseid) == []


def test_get_groups_unknown_id_shows_the_fields_asked_for(site: Site) -> None:
    result = call(site, "core_group_get_groups", groupids__0=42)
    assert result["errorcode"] == "invalidrecord"
    assert result["debuginfo"].startswith("SELECT id, courseid, name, idnumber, description, descriptionformat, "
                                          "enrolmentkey, visibility, participation FROM {groups} WHERE id = ?")
    assert error(call(site, "core_group_get_group_members", groupids__0=42))[1].startswith(
        "SELECT id, courseid, name, enrolmentkey FROM {groups}")
    assert error(call(site, "core_group_get_course_groups", courseid=42))[0] == "errorcoursecontextnotvalid"


def test_update_group_idnumber_and_name_rules(site: Site) -> None:
    courseid = make_course(site, "G-2")
    for i in (1, 2):
        call(site, "core_group_create_groups", **{"groups__0__courseid": courseid, "groups__0__name": f"G{i}",
                                                  "groups__0__description": "", "groups__0__idnumber": f"ID{i}"})
    assert error(call(site, "core_group_update_groups", groups__0__id=2, groups__0__name="G1"))[1] == \
        "A different group with the same name already exists in the course"
    assert error(call(site, "core_group_update_groups", groups__0__id=2, groups__0__name="G2",
                      groups__0__idnumber="ID1"))[0] == "idnumbertaken"
    assert error(call(site, "core_group_update_groups", groups__0__id=9, groups__0__name="G9"))[1] == \
        "Group 9 does not exist"
    assert call(site, "core_group_update_groups", groups__0__id=2, groups__0__name="G2b",
                groups__0__idnumber="ID2") is None
    assert [g["name"] for g in call(site, "core_group_get_course_groups", courseid=courseid)] == ["G1", "G2b"]


def test_memberships_follow_enrolment_and_user_deletion(site: Site) -> None:
    courseid = make_course(site, "G-3")
    alice, bob = make_user(site, "alice", "Alpha"), make_user(site, "bob", "Beta")
    enrol(site, alice, courseid)
    enrol(site, bob, courseid, suspend=1)
    call(site, "core_group_create_groups", groups__0__courseid=courseid, groups__0__name="G", groups__0__description="")
    assert call(site, "core_group_add_group_members", members__0__groupid=1, members__0__userid=alice,
                members__1__groupid=1, members__1__userid=bob) is None
    assert group_member_ids(site, 1) == [alice, bob]
    call(site, "enrol_manual_unenrol_users", enrolments__0__userid=alice, enrolments__0__courseid=courseid)
    assert group_member_ids(site, 1) == [bob]
    call(site, "core_user_delete_users", userids__0=bob)
    assert group_member_ids(site, 1) == []
    code, debuginfo = error(call(site, "core_group_add_group_members", members__0__groupid=1, members__0__userid=bob))
    assert code == "invaliduser" and debuginfo.endswith("2 => '1',\n)]")


def test_enrolled_users_list_their_groups(site: Site) -> None:
    courseid = make_course(site, "G-4")
    alice = make_user(site, "alice", "Alpha")
    enrol(site, alice, courseid)
    call(site, "core_group_create_groups", groups__0__courseid=courseid, groups__0__name="B group",
         groups__0__description="", groups__1__courseid=courseid, groups__1__name="A group",
         groups__1__description="<b>x</b>")
    call(site, "core_group_add_group_members", members__0__groupid=1, members__0__userid=alice,
         members__1__groupid=2, members__1__userid=alice)
    users = call(site, "core_enrol_get_enrolled_users", courseid=courseid)
    assert [g["name"] for g in users[0]["groups"]] == ["A group", "B group"]
    call(site, "core_course_delete_courses", courseids__0=courseid)
    assert site.store.one("SELECT COUNT(*) AS n FROM groups")["n"] == 0
