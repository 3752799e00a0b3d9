"""Moodle's own rules, known locally (adapters/moodle/rules.py): PHP's strip_tags, PARAM_TEXT's multilang,
validate_email, plugin names, column lengths. Where PHP is installed, the ports are compared with PHP itself."""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from bufsync.adapters.moodle.rules import (
    COURSE_COLUMNS,
    COURSE_TEXT_TYPES,
    USER_COLUMNS,
    USER_TEXT_TYPES,
    FieldProblem,
    clean_text,
    field_problem,
    is_plugin_name,
    strip_tags,
    validate_email,
)

# What PHP 8.2's strip_tags() answers (php -r 'echo strip_tags(...)').
STRIP_TAGS = [
    ("a < b", "a < b"), ("a <b", "a "), ("Иван <b>x</b>", "Иван x"), ("x > y", "x > y"), ("a<>b", "ab"),
    ("a <!-- c --> b", "a  b"), ("<3", ""), ("a<3", "a"), ("'<a'>b", "'"), ("<a href='>'>q</a>", "q"),
    ("<?php echo 1; ?>t", "t"), ("<!DOCTYPE html>y", "y"), ("Tom & Jerry", "Tom & Jerry"), ("a\0b", "ab"),
]


@pytest.mark.parametrize("text, expected", STRIP_TAGS)
def test_strip_tags_answers_as_php(text: str, expected: str) -> None:
    assert strip_tags(text) == expected


def test_multilang_survives_param_text_other_tags_do_not() -> None:
    ok = '<span lang="ru" class="multilang">Курс</span><span lang="en" class="multilang">Course</span>'
    assert clean_text(ok) == ok
    assert clean_text('<lang lang="ru">Курс</lang>') == '<lang lang="ru">Курс</lang>'
    assert clean_text("Курс <b>жирный</b>") == "Курс жирный"
    assert clean_text('<lang lang="ru">Курс</lang><') != '<lang lang="ru">Курс</lang><'  # a stray < is cut


@pytest.mark.parametrize("address, ok", [
    ("ivan@example.com", True), ("a@b", False), ("a@b.123", False), ("a" * 64 + "@ex.com", True),
    ("a" * 65 + "@ex.com", False), ("a@" + "b" * 63 + ".com", True), ("a@" + "b" * 64 + ".com", False),
    ("a@-b.com", False), (".a@b.com", False), ("a..b@c.com", False), ("<a>@b.com", False), ("a@xn--p1ai.ru", True),
    ("\u212a@ex.com", False),  # the Kelvin sign is not a K
])
def test_validate_email_as_filter_var(address: str, ok: bool) -> None:
    assert validate_email(address) is ok


def test_plugin_names() -> None:
    assert is_plugin_name("ldap") and is_plugin_name("oauth2") and is_plugin_name("my_auth")
    assert not is_plugin_name("Manual") and not is_plugin_name("ldap x") and not is_plugin_name("ldap_")
    assert not is_plugin_name("") and not is_plugin_name("1db")


def test_field_problem_names_the_field_what_was_found_and_the_limit() -> None:
    assert field_problem({"phone1": "8" * 28}, USER_TEXT_TYPES, USER_COLUMNS) == FieldProblem("phone1", "toolong",
                                                                                             "28", 20)
    assert field_problem({"firstname": "Иван <b>"}, USER_TEXT_TYPES, USER_COLUMNS) == FieldProblem(
        "firstname", "markup", "<b>")
    assert field_problem({"firstname": "Иван < Пётр", "lastname": "Б & В"}, USER_TEXT_TYPES, USER_COLUMNS) is None
    assert field_problem({"fullname": "Я" * 255}, COURSE_TEXT_TYPES, COURSE_COLUMNS) == FieldProblem(
        "fullname", "toolong", "255", 254)
    assert field_problem({"fullname": "Я" * 254, "shortname": "Я" * 255}, COURSE_TEXT_TYPES, COURSE_COLUMNS) is None


def _php(code: str, inputs: list[str]) -> list:
    done = subprocess.run(["php", "-r", "$in = json_decode(stream_get_contents(STDIN)); $o = []; "
                           f"foreach ($in as $s) {{ $o[] = {code}; }} echo json_encode($o);"],
                          input=json.dumps(inputs), capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("php") is None, reason="no php binary to compare the ports with")
def test_ports_agree_with_php_on_random_input() -> None:
    rnd = random.Random(7)
    alphabet = list("<>!?-'\"ab /lmxLMXeE\\()DdOoCcTtYyPp\t\n") + ["Я", "\0"]
    texts = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 20))) for _ in range(20000)]
    assert [strip_tags(t) for t in texts] == _php("strip_tags($s)", texts)
    parts = ["a", "ivan", ".", "-", "_", "+", "1", "@", "example", "com", "xn--p1ai", "Я", "'", "x" * 64, "<"]
    addresses = ["".join(rnd.choice(parts) for _ in range(rnd.randint(1, 4))) + "@" +
                 ".".join(rnd.choice(["a", "b1", "-", "ex", "1", "xn--", "y" * 63]) for _ in range(rnd.randint(1, 3)))
                 for _ in range(20000)]
    expected = _php("filter_var($s, FILTER_VALIDATE_EMAIL) !== false && !preg_match('/[<>]/', $s)", addresses)
    assert [validate_email(a) for a in addresses] == expected
