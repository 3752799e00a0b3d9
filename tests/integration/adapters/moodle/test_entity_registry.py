"""A Moodle entity is a module in adapters/moodle/entities that registers its adapter: no list to edit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO


def test_the_shipped_entities_register_themselves() -> None:
    from bufsync.adapters.moodle.entities import entity_adapters
    adapters = entity_adapters()
    assert {k: v.__name__ for k, v in adapters.items()} == {
        "category": "CategoryAdapter", "cohort_member": "CohortMemberAdapter", "course": "CourseAdapter",
        "enrolment": "EnrolmentAdapter", "user": "UserAdapter"}


def test_a_new_entity_module_is_found_and_a_mapping_targeting_it_runs_instead_of_being_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "entities"
    folder.mkdir()
    (folder / "course_groups.py").write_text(textwrap.dedent('''
        from bufsync.adapters.moodle.entities import register

        @register("course_group")
        class CourseGroupAdapter:
            def __init__(self, client, mapping, settings=None):
                self.mapping = mapping
    '''), encoding="utf-8")
    program = textwrap.dedent('''
        import sys
        import bufsync.adapters.moodle.entities as entities
        entities.__path__.append(sys.argv[1])
        from bufsync.config import load_settings
        from bufsync.mapping import load_mappings
        from bufsync.runner import select_mappings
        loaded = load_settings(None, {})
        chosen, skipped = select_mappings(load_mappings(loaded.mappings_dir), [])
        print(sorted(entities.entity_adapters()))
        print("learning_processes" in [m.name for m in chosen], skipped.get("learning_processes"))
    ''')
    result = subprocess.run([sys.executable, "-c", program, str(folder)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    names, processes = result.stdout.splitlines()
    assert names == "['category', 'cohort_member', 'course', 'course_group', 'enrolment', 'user']"
    assert processes.startswith("True"), processes  # the learning processes (course groups) are no longer skipped
