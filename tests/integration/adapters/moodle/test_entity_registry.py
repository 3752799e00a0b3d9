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
        "achievement": "AchievementAdapter", "category": "CategoryAdapter", "cohort_member": "CohortMemberAdapter",
        "course": "CourseAdapter",
        "course_group": "CourseGroupAdapter", "enrolment": "EnrolmentAdapter", "grade": "GradeReader",
        "user": "UserAdapter"}


def test_a_new_entity_module_is_found_and_a_mapping_targeting_it_runs_instead_of_being_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "entities"
    folder.mkdir()
    (folder / "badges.py").write_text(textwrap.dedent('''
        from bufsync.adapters.moodle.entities import register

        @register("badge")
        class BadgeAdapter:
            def __init__(self, client, mapping, settings=None):
                self.mapping = mapping
    '''), encoding="utf-8")
    maps = tmp_path / "mappings"
    maps.mkdir()
    (maps / "badges.yaml").write_text(textwrap.dedent('''
        format: 1
        name: badges
        description: Значки (тестовый маппинг)
        table:
          name: buf_badges
          description: Значки
          columns:
            - {name: person_external_id, type: string(64), key: true, description: Человек}
        sync:
          source: {system: buffer}
          target: {system: moodle, entity: badge}
          key: [person_external_id]
          fields:
            userid: person_external_id
    '''), encoding="utf-8")
    program = textwrap.dedent('''
        import sys
        import bufsync.adapters.moodle.entities as entities
        entities.__path__.append(sys.argv[1])
        from bufsync.config import load_settings
        from bufsync.mapping import load_mappings
        from bufsync.runner import select_mappings
        loaded = load_settings(None, {"BUFSYNC_MAPPINGS_DIR": sys.argv[2]})
        chosen, skipped = select_mappings(load_mappings(loaded.mappings_dir), [])
        print(sorted(entities.entity_adapters()))
        print("badges" in [m.name for m in chosen], skipped.get("badges"))
    ''')
    result = subprocess.run([sys.executable, "-c", program, str(folder), str(maps)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    names, badges = result.stdout.splitlines()
    assert names == ("['achievement', 'badge', 'category', 'cohort_member', 'course', 'course_group', 'enrolment', "
                     "'grade', 'user']")
    assert badges.startswith("True"), badges  # a mapping targeting the new entity runs instead of being skipped
