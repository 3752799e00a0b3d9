"""Typed settings: one YAML file, every key overridable from the environment.

Environment names are derived from key paths: `moodle.token` -> `BUFSYNC_MOODLE_TOKEN`,
`buffer_url` -> `BUFSYNC_BUFFER_URL`. Secrets are `SecretStr`: pydantic never prints them
and `bufsync.secrets` masks them anywhere else.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, StringConstraints, create_model, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bufsync import secrets
from bufsync.errors import ConfigError, Problem
from bufsync.paths import shipped_mappings_dir
from bufsync.portals import portals
from bufsync.validation import StrictModel, http_url, validate
from bufsync.yamlfile import YamlDocument, load_yaml

ENV_PREFIX = "BUFSYNC_"
CONFIG_ENV = "BUFSYNC_CONFIG"
DEFAULT_CONFIG_NAME = "bufsync.yaml"
DEFAULT_SQLITE_NAME = "bufsync.db"


class CohortSettings(StrictModel):
    """The cohorts bufsync makes from the contingent (academic groups, departments)."""

    prefix: str = Field("1c-", min_length=1, max_length=20, description="idnumber prefix of bufsync's own "
                        "cohorts: the only ones it changes or empties")
    context: Literal["system", "department"] = Field(
        "system", description="where a new cohort lives: the site, or the category of the row's department "
        "(the mapping's `category` field, a lookup of departments)")
    delete_empty: bool = Field(False, description="delete a cohort of bufsync's own once its last member left "
                               "(it is made again when someone joins); needs core_cohort_delete_cohorts")


class AchievementSettings(StrictModel):
    """What a person's achievements (buf_achievements) become besides a cohort per kind: Moodle 4.5 has no web
    service to award a badge, so the list goes into a custom profile field the site creates."""

    profile_field: str | None = Field(
        None, description="short name of the custom user profile field (textarea recommended) that holds each "
        "person's list of active achievements; empty: no list is written")

    @field_validator("profile_field", mode="before")
    @classmethod
    def _shortname(cls, value: Any) -> Any:
        """What core_user_update_users takes as a custom field's type (PARAM_ALPHANUMEXT); blank means none."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", value):
            raise ValueError("expected the short name of a Moodle custom profile field: 1 to 100 latin letters, "
                             "digits, _ or -")
        return value


class GradeSettings(StrictModel):
    """Grades read back for 1C (the outbound mapping `grades`, table buf_grades)."""

    courses: Literal["managed", "idnumber"] = Field(
        "managed", description="whose grades are read: the courses bufsync manages (linked by the course mappings), "
        "or every Moodle course that has an idnumber")
    items: bool = Field(True, description="besides the course total, every grade item that has an idnumber (its "
                        "idnumber is the row's `item`); false: the course total only")
    completion: Literal["per_user", "report", "off"] = Field(
        "per_user", description="how completed_at is read: per_user (one call per student of a course that tracks "
        "completion; nothing to make on the site), report (the custom report completion_report.php makes: one call "
        "for up to 10,000 completed students), off (completed_at stays empty)")
    completion_report: int | None = Field(None, ge=1, description="the id completion_report.php printed (with "
                                          "completion: report)")
    time_budget: float | None = Field(None, gt=0, description="seconds a run may spend reading gradebooks; the "
                                      "courses not reached are read first by the next run (default: no limit)")

    @model_validator(mode="after")
    def _report_named(self) -> GradeSettings:
        if self.completion == "report" and self.completion_report is None:
            raise ValueError("completion: report needs completion_report: the id completion_report.php printed")
        return self


class MoodleSettings(StrictModel):
    url: str | None = Field(None, description="Moodle site URL, e.g. https://lms.example.edu")
    token: SecretStr | None = Field(None, description="Web service token of the bufsync service")
    timeout: float = Field(30.0, gt=0, description="seconds for one HTTP call")
    max_input_vars: int = Field(5000, ge=100, description="PHP max_input_vars of the Moodle server")
    concurrency: int = Field(4, ge=1, le=16, description="Moodle calls in flight at once when a long list is "
                             "written or read (people, enrolments); 1: one after another")
    batch_items: int | None = Field(None, ge=1, description="at most this many records a call (default: as many "
                                    "as max_input_vars allows, spread over the calls in flight)")
    verify_tls: bool = True
    default_category: int = Field(1, ge=1, description="category id for courses without a department")
    roles: dict[str, int] | None = Field(None, description="role shortname -> id, when the site's ids differ")
    password_policy: bool = Field(True, description="check Moodle's default password policy locally")
    cohorts: CohortSettings = Field(default_factory=CohortSettings)
    achievements: AchievementSettings = Field(default_factory=AchievementSettings)
    grades: GradeSettings = Field(default_factory=GradeSettings)

    _http_url = field_validator("url")(classmethod(lambda cls, value: http_url(value)))


def _portals_model() -> type[BaseModel]:
    """`portals:`: one section per registered portal, each validated by the portal's own settings model."""
    fields: dict[str, Any] = {name: (p.settings_class(), Field(default_factory=p.settings_class(),
                                                               description=p.title))
                              for name, p in portals().items()}
    return create_model("PortalsSettings", __base__=StrictModel, **fields)


PortalsSettings = _portals_model()
_JOB_NAME = r"^[a-z0-9][a-z0-9_-]{0,99}$"


class JobSettings(StrictModel):
    """One exchange task: what it runs and when."""

    kind: str = Field(
        "sync", description="sync: bufsync run of the listed mappings; a portal's name: its scenario run fills its "
                            "queue; dispatch: deliver the portal's queue; import: load the files of a folder, then "
                            "run the listed mappings; export: write the listed mappings' tables to a folder")
    portal: str | None = Field(None, description="the portal of a dispatch job (default: the only one configured)")
    schedule: str = Field(description="every 15 minutes, daily at 02:00, weekdays at 07:30, mon,fri at 18:00")
    mappings: list[str] = Field(default_factory=list, description="empty: every runnable mapping")
    full: bool = False
    time_limit: int = Field(3600, ge=1, description="seconds; an overrunning run is stopped and recorded")
    allow_removals: int | None = Field(None, ge=0)
    # kind import / export: files in a folder
    folder: Path | None = Field(None, description="import: the folder whose incoming/ is watched (processing/, "
                                "done/, failed/ beside it); export: where the files are written")
    files: dict[str, str] = Field(default_factory=dict, description="import: file name pattern (users*.csv) -> the "
                                  "mapping its files load into; patterns are tried in order")
    mode: Literal["upsert", "replace"] = Field("upsert", description="import: upsert adds and changes rows; replace: "
                                               "each file is the whole list")
    settle_seconds: float = Field(10.0, ge=0, description="import: a file changed more recently than this is still "
                                  "being copied and waits for the next tick")
    format: Literal["csv", "xlsx"] = Field("csv", description="export: the files' format")
    encoding: Literal["utf-8-sig", "cp1251"] = Field("utf-8-sig", description="export: the CSV encoding")
    titles: bool = Field(False, description="export: head the columns with their Russian titles")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        from bufsync.scheduler.schedules import parse
        parse(value)
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        known = ["sync", "dispatch", "import", "export", *portals()]
        if value not in known:
            raise ValueError(f"expected one of {', '.join(known)}")
        return value

    @field_validator("portal")
    @classmethod
    def _portal(cls, value: str | None) -> str | None:
        if value is not None and value not in portals():
            raise ValueError(f"expected one of {', '.join(portals()) or 'none'}")
        return value

    @model_validator(mode="after")
    def _folder_jobs(self) -> JobSettings:
        if self.kind in ("import", "export") and self.folder is None:
            raise ValueError(f"a job of kind {self.kind} needs folder: the directory of its files")
        if self.kind == "import" and not self.files:
            raise ValueError("an import job needs files: name patterns and their mappings, e.g. {'users*.csv': users}")
        if self.kind == "export" and not self.mappings:
            raise ValueError("an export job needs mappings: the tables it writes, e.g. [grades]")
        return self


class Settings(StrictModel):
    buffer_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL of the buffer database; empty: a SQLite file in the working directory")
    mappings_dir: Path | None = Field(None, description="a site's own copy of the mapping files")
    migrations_dir: Path | None = Field(
        None, description="where `bufsync db revision` writes a site's own migrations")
    timezone: str = Field("Europe/Moscow", description="time zone of datetimes written by 1C")
    log_format: Literal["text", "json"] = "text"
    moodle: MoodleSettings = MoodleSettings()
    # PortalsSettings is a model built at import from the registered portals: mypy cannot use it as a type
    portals: PortalsSettings = Field(default_factory=lambda: PortalsSettings(),  # type: ignore[valid-type]
                                     description="one section per portal "
                                                 "(a top-level section named after a portal is read too)")
    jobs: dict[Annotated[str, StringConstraints(pattern=_JOB_NAME)], JobSettings] = Field(default_factory=dict)
    retention_days: int = Field(90, ge=1, description="sync_runs and finished sync_queue items older than this "
                                                      "are deleted by the daemon")
    heartbeat_seconds: float = Field(10.0, gt=0, description="how often a running job says it is alive")
    late_after: int = Field(300, ge=0, description="seconds past a due time before `bufsync status` calls a job late")

    @field_validator("buffer_url")
    @classmethod
    def _sqlalchemy_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError(
                "expected a SQLAlchemy database URL such as postgresql+psycopg2://user@host/db, "
                "mssql+pymssql://user:password@host/db or sqlite:///path/buffer.db") from None
        if url.get_backend_name() not in ("postgresql", "mssql", "sqlite"):
            raise ValueError(f"expected a postgresql, mssql or sqlite URL, not {url.get_backend_name()}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as Europe/Moscow") from None
        return value


class LoadedSettings:
    """Settings plus where they came from (for messages and relative paths)."""

    def __init__(self, settings: Settings, file: Path | None, base_dir: Path) -> None:
        self.settings = settings
        self.file = file
        self.base_dir = base_dir

    @property
    def buffer_url(self) -> str:
        if self.settings.buffer_url is not None:
            return self.settings.buffer_url.get_secret_value()
        return f"sqlite:///{(self.base_dir / DEFAULT_SQLITE_NAME).as_posix()}"

    @property
    def buffer_url_display(self) -> str:
        return make_url(self.buffer_url).render_as_string(hide_password=True)

    @property
    def mappings_dir(self) -> Path:
        return self._resolve(self.settings.mappings_dir) or shipped_mappings_dir()

    @property
    def migrations_dir(self) -> Path:
        return self._resolve(self.settings.migrations_dir) or self.base_dir / "migrations"

    @property
    def moodle(self) -> MoodleSettings:
        return self.settings.moodle

    def _resolve(self, path: Path | None) -> Path | None:
        if path is None:
            return None
        return path if path.is_absolute() else (self.base_dir / path)


def env_names(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Every environment variable a setting can come from, with its key path."""
    names: dict[str, tuple[str, ...]] = {}
    for name, info in model.model_fields.items():
        path = prefix + (name,)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(env_names(annotation, path))
        else:
            names[ENV_PREFIX + "_".join(path).upper()] = path
    return names


def _legacy_env_names() -> dict[str, tuple[str, ...]]:
    """BUFSYNC_<PORTAL>_<KEY>: a portal's keys as they were named before `portals:` (still read)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, portal in portals().items():
        for env, path in env_names(portal.settings_class(), (name,)).items():
            out[env] = ("portals",) + path
    return out


def _legacy_sections(data: dict[str, Any], doc: YamlDocument | None) -> None:
    """A top-level `scos:` (any portal's name) is its `portals:` section, with its lines kept for messages."""
    for name in portals():
        if name not in data:
            continue
        section = data.pop(name)
        existing = data.get("portals")
        if isinstance(existing, dict) and name in existing:
            line = doc.line_of((name,)) if doc is not None else None
            raise ConfigError(Problem(doc.file if doc else None, name,
                                      f"given twice: as `{name}:` and as `portals.{name}:`; keep one", line))
        data["portals"] = dict(existing) if isinstance(existing, dict) else {}
        data["portals"][name] = section
        if doc is not None:  # messages find the key and its line where the file has them
            for path, line in list(doc.lines.items()):
                if path[:1] == (name,):
                    doc.lines.setdefault(("portals",) + path, line)
            doc.data = data


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[tuple[str, ...], str]:
    """Values from BUFSYNC_* variables put into the data; returns each key path set with the variable's name."""
    applied: dict[tuple[str, ...], str] = {}
    for env, path in (_legacy_env_names() | env_names()).items():
        if env in environ and environ[env] != "":
            node = data
            for part in path[:-1]:
                existing = node.get(part)
                if not isinstance(existing, dict):
                    existing = {}
                    node[part] = existing
                node = existing
            node[path[-1]] = environ[env]
            applied[path] = env
    return applied


def load_settings(config: Path | None = None, environ: dict[str, str] | None = None) -> LoadedSettings:
    """Read the config file (if any) and the environment; fail with file, key and expectation."""
    environ = dict(os.environ) if environ is None else environ
    explicit = config is not None or bool(environ.get(CONFIG_ENV))
    file = config or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else Path(DEFAULT_CONFIG_NAME))
    doc: YamlDocument | None = None
    data: dict[str, Any] = {}
    if file.exists() or explicit:
        doc = load_yaml(file)
        if doc.data is None:
            data = {}
        elif not isinstance(doc.data, dict):
            raise ConfigError(Problem(file, "", f"expected a mapping of keys, found {type(doc.data).__name__}", 1))
        else:
            data = dict(doc.data)
            if isinstance(data.get("moodle"), dict):
                data["moodle"] = dict(data["moodle"])
            _legacy_sections(data, doc)
    from_env = _apply_env(data, environ)
    try:
        settings = validate(Settings, data, doc)
    except ConfigError as exc:
        # say when a bad value came from the environment rather than the file
        for problem in exc.problems:
            for path, env in from_env.items():
                if problem.key == ".".join(path):
                    exc.problems[exc.problems.index(problem)] = Problem(
                        None, f"{env} (environment)", problem.message)
        raise ConfigError(exc.problems) from None
    _register_secrets(settings)
    base_dir = file.resolve().parent if doc is not None else Path.cwd()
    return LoadedSettings(settings, file if doc is not None else None, base_dir)


def _register_secrets(settings: Settings) -> None:
    if settings.moodle.token is not None:
        secrets.register(settings.moodle.token.get_secret_value())
    for name in portals():  # every secret a portal's settings hold (keys, tokens)
        section = getattr(settings.portals, name)
        for field in type(section).model_fields:
            value = getattr(section, field)
            if isinstance(value, SecretStr) and value.get_secret_value():
                secrets.register(value.get_secret_value())
    if settings.buffer_url is not None:
        password = make_url(settings.buffer_url.get_secret_value()).password
        if password:
            secrets.register(str(password))
