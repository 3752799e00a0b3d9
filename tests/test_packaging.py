"""setup.cfg lists packages by hand (package_dir mapping): every folder must be listed."""

import configparser

from tests.conftest import REPO


def test_every_engine_package_is_listed() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {"bufsync"} | {
        "bufsync." + ".".join(p.parent.relative_to(REPO / "engine").parts)
        for p in (REPO / "engine").rglob("__init__.py") if p.parent != REPO / "engine"
    }
    assert found <= listed, found - listed
    assert {"bufsync.migrations", "bufsync.migrations.versions", "bufsync.mappings"} <= listed
