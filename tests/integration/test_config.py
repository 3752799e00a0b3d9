from pathlib import Path

import pytest

from bufsync.config import env_names, load_settings
from bufsync.errors import ConfigError
from tests.integration.clirun import bufsync_in_process


def test_no_file_uses_sqlite_in_working_directory_and_shipped_mappings(tmp_path: Path) -> None:
    loaded = load_settings(None, {})
    assert loaded.file is None
    assert loaded.buffer_url == f"sqlite:///{(tmp_path / 'bufsync.db').as_posix()}"
    assert (loaded.mappings_dir / "users.yaml").is_file()


def test_every_key_has_an_environment_name() -> None:
    names = env_names()
    for required in ("BUFSYNC_BUFFER_URL", "BUFSYNC_MOODLE_URL", "BUFSYNC_MOODLE_TOKEN", "BUFSYNC_MAPPINGS_DIR"):
        assert required in names
    assert names["BUFSYNC_MOODLE_MAX_INPUT_VARS"] == ("moodle", "max_input_vars")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "bufsync.yaml").write_text(
        "buffer_url: sqlite:///from-file.db\nmoodle:\n  url: http://file.example\n  timeout: 5\n")
    loaded = load_settings(None, {"BUFSYNC_MOODLE_URL": "http://env.example/", "BUFSYNC_MOODLE_TIMEOUT": "7.5"})
    assert loaded.moodle.url == "http://env.example"
    assert loaded.moodle.timeout == 7.5
    assert loaded.buffer_url == "sqlite:///from-file.db"


def test_config_path_from_environment_and_relative_paths(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "my.yaml").write_text("mappings_dir: maps\n")
    loaded = load_settings(None, {"BUFSYNC_CONFIG": str(site / "my.yaml")})
    assert loaded.mappings_dir == site / "maps"
    assert loaded.migrations_dir == site / "migrations"


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.yaml", {})


def test_unknown_key_lists_the_accepted_ones(tmp_path: Path) -> None:
    path = tmp_path / "bufsync.yaml"
    path.write_text("moodle:\n  url: http://x\n  tokn: abc\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, {})
    text = str(err.value)
    assert f"{path}:3: moodle.tokn: unknown key; expected one of:" in text
    assert "token" in text and "max_input_vars" in text


def test_wrong_type_names_file_key_line_found_and_expected(tmp_path: Path) -> None:
    path = tmp_path / "bufsync.yaml"
    path.write_text("timezone: Europe/Moscow\nmoodle:\n  max_input_vars: lots\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, {})
    text = str(err.value)
    assert f"{path}:3: moodle.max_input_vars:" in text
    assert "valid integer" in text and "'lots'" in text


def test_bad_value_from_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"BUFSYNC_MOODLE_URL": "ftp://nope"})
    assert "BUFSYNC_MOODLE_URL (environment)" in str(err.value)
    assert "http:// or https://" in str(err.value)


def test_achievements_profile_field_names_a_moodle_shortname(tmp_path: Path) -> None:
    """moodle.achievements.profile_field: what core_user_update_users takes as a custom field's name, or none."""
    assert load_settings(None, {}).moodle.achievements.profile_field is None
    field = {"BUFSYNC_MOODLE_ACHIEVEMENTS_PROFILE_FIELD": "achievements"}
    assert load_settings(None, field).moodle.achievements.profile_field == "achievements"
    path = tmp_path / "bufsync.yaml"
    path.write_text("moodle:\n  achievements:\n    profile_field: ''\n")
    assert load_settings(path, {}).moodle.achievements.profile_field is None  # blank: no list written
    path.write_text("moodle:\n  achievements:\n    profile_field: мои достижения\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, {})
    assert (f"{path}:3: moodle.achievements.profile_field: expected the short name of a Moodle custom profile "
            "field: 1 to 100 latin letters, digits, _ or - (found 'мои достижения')") in str(err.value)
    # a run refuses at start, before it touches the buffer
    result = bufsync_in_process("run", env={"BUFSYNC_MOODLE_ACHIEVEMENTS_PROFILE_FIELD": "a;b",
                                            "BUFSYNC_MOODLE_URL": "http://127.0.0.1:9", "BUFSYNC_MOODLE_TOKEN": "x"})
    assert result.returncode == 2
    assert "BUFSYNC_MOODLE_ACHIEVEMENTS_PROFILE_FIELD (environment): expected the short name" in result.stderr
    assert "(found 'a;b')" in result.stderr
    assert not (tmp_path / "bufsync.db").exists()


def test_bad_buffer_url_and_time_zone() -> None:
    with pytest.raises(ConfigError, match="SQLAlchemy database URL"):
        load_settings(None, {"BUFSYNC_BUFFER_URL": "not a url"})
    with pytest.raises(ConfigError, match="postgresql, mssql or sqlite"):
        load_settings(None, {"BUFSYNC_BUFFER_URL": "mysql://u@h/db"})
    with pytest.raises(ConfigError, match="IANA time zone"):
        load_settings(None, {"BUFSYNC_TIMEZONE": "Moscow"})


def test_not_a_mapping_at_top(tmp_path: Path) -> None:
    path = tmp_path / "bufsync.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of keys"):
        load_settings(path, {})


def test_secret_values_never_appear_in_errors_or_reprs(tmp_path: Path) -> None:
    token = "tok-SECRET-9f8e7d"
    loaded = load_settings(None, {"BUFSYNC_MOODLE_TOKEN": token,
                                  "BUFSYNC_BUFFER_URL": "postgresql://bob:pw-SECRET-42@db.example/buf"})
    assert token not in repr(loaded.settings) and token not in str(loaded.settings)
    assert "pw-SECRET-42" not in loaded.buffer_url_display
    assert "pw-SECRET-42" not in repr(loaded.settings)
    # a bad secret value is reported without echoing it
    path = tmp_path / "bufsync.yaml"
    path.write_text("moodle:\n  token: [tok-SECRET-list]\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, {})
    assert "tok-SECRET-list" not in str(err.value)
    assert "moodle.token" in str(err.value)
