"""A Moodle course as a СЦОС passport: where each field comes from, and the reasons when one is missing."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from bufsync.portals.scos.passport import build, promises_certificate

ZONE = ZoneInfo("Europe/Moscow")
COURSE = {"id": 7, "fullname": "Python", "summary": "<p>Курс &laquo;Python&raquo;</p>", "startdate": 1788210000,
          "enddate": 1788210000 + 10 * 7 * 86400 - 3600, "courseimage": "https://lms/img.svg",
          "customfields": [{"shortname": "scos_publish", "valueraw": 1}, {"shortname": "scos_credits", "valueraw": "4"},
                           {"shortname": "scos_direction", "valueraw": "09.03.01, 09.03.02"},
                           {"shortname": "scos_competences",
                            "valueraw": "ОПК-1. Решает задачи, используя Python\nПК-2"}]}
DEFAULTS = {"content": "c", "results": "r", "competences": "default", "requirements": "Математика; Физика",
            "direction": ["01.01.01"], "credits": 1}
TEACHERS = [{"fullname": "Анна Иванова", "profileimageurl": "https://lms/u/1.png"}]


def passport(course=COURSE, teachers=TEACHERS, defaults=DEFAULTS, institution="inst"):
    return build(course, teachers, defaults=defaults, institution=institution, moodle_url="https://lms",
                 session_id="S-1", zone=ZONE)


def test_fields_from_the_course_its_custom_fields_and_the_defaults() -> None:
    p = passport()
    assert p.problems == []
    f = p.fields
    assert f["title"] == "Python" and f["description"] == "Курс «Python»"
    assert f["external_url"] == "https://lms/course/view.php?id=7" and f["institution"] == "inst"
    assert f["started_at"] == "2026-09-01" and f["duration"] == {"code": "week", "value": 10}
    assert f["credits"] == 4  # the course's custom field wins over the default
    assert f["direction"] == ["09.03.01", "09.03.02"]
    assert f["competences"] == "ОПК-1. Решает задачи, используя Python\nПК-2"  # commas inside an item stay
    assert f["requirements"] == ["Математика", "Физика"]
    assert f["teachers"] == [{"display_name": "Анна Иванова", "image": "https://lms/u/1.png"}]
    assert f["cert"] == "false" and f["sessionid"] == "S-1" and f["language"] == "ru"


def test_the_digest_changes_with_the_content_only() -> None:
    assert passport().digest == passport().digest
    renamed = dict(COURSE, fullname="Python 2")
    assert passport(renamed).digest != passport().digest


def test_each_missing_field_is_named_with_where_to_fill_it() -> None:
    course = dict(COURSE, summary="", startdate=0, customfields=[])
    p = passport(course, teachers=[], defaults={}, institution=None)
    assert p.fields is None
    text = "\n".join(p.problems)
    assert "«description»: задайте описание курса (summary) или настраиваемое поле scos_description" in text
    assert "«institution»: задайте scos.institution в bufsync.yaml" in text
    assert "«started_at»: задайте дату начала курса (startdate)" in text
    assert "«content»: задайте настраиваемое поле курса scos_content или scos.passport.content" in text
    assert "«teachers»" in text and "«duration»" in text


def test_a_wrong_number_is_reported_not_sent() -> None:
    course = dict(COURSE, customfields=[{"shortname": "scos_credits", "valueraw": "четыре"}])
    p = passport(course)
    assert p.fields is None and "«credits» должно быть числом, а не «четыре»" in p.problems[0]


def test_certificate_promise_from_the_custom_field_or_the_default() -> None:
    assert promises_certificate({"customfields": [{"shortname": "scos_cert", "valueraw": 1}]}, {})
    assert not promises_certificate({"customfields": [{"shortname": "scos_cert", "valueraw": 0}]}, {"cert": True})
    assert promises_certificate({"customfields": []}, {"cert": "true"})
    assert not promises_certificate({"customfields": []}, {})
