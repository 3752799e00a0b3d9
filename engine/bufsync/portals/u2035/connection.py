"""The four-stage connection to Университет 2035 and its status.

1. the request letter (filled from the config) is printed to send; "the data is with me" moves on;
2. the test contour's Basic credentials are asked for and checked (a GET and a POST of a harmless statement to the
   test LRS); the statement id the LRS keeps is what the next letter names;
3. the letter for production access is printed; "the data is with me" moves on;
4. the production LRS credentials and the S3 storage are asked for and checked (LRS GET, POST and read back; an S3
   write, read back and delete); success makes the integration active.

Progress lives in sync_u2035_connection, so a second `connect` resumes where the first stopped, and may go back to
any stage already opened. Answers go into the config file, where every secret of bufsync is kept (never into the
database, never printed); once active they are frozen (a hash of them is kept) until `disable`.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import SecretStr

from bufsync.config import DEFAULT_CONFIG_NAME, LoadedSettings, env_names, load_settings
from bufsync.errors import ConfigError, Problem
from bufsync.portals.u2035.settings import U2035Settings
from bufsync.portals.u2035.stages import FROZEN, STAGE_KEYS
from bufsync.state.ledger import now_utc

NOT_STARTED, IN_PROGRESS, DATA_ERROR, ACTIVE = "not_started", "in_progress", "data_error", "active"
STATUS_TEXT = {NOT_STARTED: "Не выполнен", IN_PROGRESS: "В процессе ({stage}/4)", DATA_ERROR: "Ошибка данных",
               ACTIVE: "Активен"}
LABELS = {
    "test_lrs_url": "адрес тестового LRS", "test_key": "ключ (key) тестового LRS",
    "test_secret": "секрет (secret) тестового LRS", "lrs_url": "адрес LRS", "key": "ключ (key) LRS",
    "secret": "секрет (secret) LRS", "s3_endpoint": "адрес S3 (endpoint)", "s3_bucket": "бакет S3",
    "s3_access_key": "ключ доступа S3 (access key)", "s3_secret_key": "секретный ключ S3 (secret key)",
    "s3_user_id": "идентификатор пользователя S3 (user id)",
}
SECRET_KEYS = ("test_key", "test_secret", "key", "secret", "s3_access_key", "s3_secret_key")
SECTION = ("portals", "u2035")
PROBE_ACTOR = "bufsync-connection-check"  # the account name of the connection checks' statements: no learner


@dataclass
class Connection:
    status: str = NOT_STARTED
    stage: int = 1
    opened: int = 1
    test_statement_id: str | None = None
    settings_hash: str | None = None
    last_error: str | None = None
    checked_at: datetime | None = None
    activated_at: datetime | None = None

    @property
    def text(self) -> str:
        """The status as the administrator reads it: «Не выполнен», «В процессе (2/4)», «Ошибка данных», «Активен»."""
        return STATUS_TEXT[self.status].format(stage=self.stage)

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "text": self.text, "stage": self.stage, "opened": self.opened,
                "test_statement_id": self.test_statement_id, "last_error": self.last_error,
                "checked_at": self.checked_at, "activated_at": self.activated_at}


def read(engine: sa.Engine, table: sa.Table) -> Connection:
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == 1)).first()
    if row is None:
        return Connection()
    return Connection(row.status, row.stage, row.opened, row.test_statement_id, row.settings_hash, row.last_error,
                      row.checked_at, row.activated_at)


def write(engine: sa.Engine, table: sa.Table, connection: Connection) -> None:
    values = {"status": connection.status, "stage": connection.stage, "opened": connection.opened,
              "test_statement_id": connection.test_statement_id, "settings_hash": connection.settings_hash,
              "last_error": (connection.last_error or None) and connection.last_error[:2000],
              "checked_at": connection.checked_at, "activated_at": connection.activated_at, "updated_at": now_utc()}
    with engine.begin() as conn:
        if conn.execute(table.update().where(table.c.id == 1).values(values)).rowcount == 0:
            conn.execute(table.insert().values(id=1, **values))


def settings_hash(settings: U2035Settings) -> str:
    """A fingerprint of the connection's settings (secrets included, only as part of the hash): a change after
    activation is seen by every run and dispatcher, which then refuse to send."""
    values = {}
    for key in FROZEN:
        value = getattr(settings, key)
        values[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def frozen_problem(settings: U2035Settings, connection: Connection) -> str | None:
    """Why nothing may be sent now, or None: the connection is active and its settings are those it was checked
    with."""
    if not connection.active:
        return (f"подключение к Университету 2035 не активно («{connection.text}»): след не отправляется; пройдите "
                "этапы `bufsync u2035 connect`")
    if connection.settings_hash != settings_hash(settings):
        return ("настройки подключения к Университету 2035 (portals.u2035: LRS, ключи, S3) изменены после "
                "активации: след не отправляется; верните прежние или выполните `bufsync u2035 disable` и пройдите "
                "`bufsync u2035 connect` заново")
    return None


def describe(settings: U2035Settings, connection: Connection) -> str:
    """The status as `bufsync status`, `bufsync u2035 status` and `bufsync check` say it: «Активен» only while the
    footprint is sent; an active connection whose settings changed since says that nothing is sent."""
    text = f"«{connection.text}»"
    if connection.active:
        problem = frozen_problem(settings, connection)
        if problem is not None:
            return f"{text}, но {problem}"
    return text


# -- letters -------------------------------------------------------------------------------------------------------
def request_letter(loaded: LoadedSettings, settings: U2035Settings) -> str:
    """Stage 1: what the university asks Университет 2035 for (the test contour)."""
    return "\n".join([
        "Университет 2035",
        "",
        "Заявка на подключение к передаче цифрового следа (тестовый контур)",
        "",
        f"Организация: {settings.organisation or '<portals.u2035.organisation не задано>'}",
        f"Ответственный: {settings.contact or '<portals.u2035.contact не задано>'}",
        f"Проект: {settings.project or '<portals.u2035.project не задано>'}",
        f"Система дистанционного обучения: Moodle, {loaded.moodle.url or '<moodle.url не задано>'}",
        "Способ передачи: высказывания xAPI 1.0.3 в LRS (HTTP Basic), файлы — в хранилище S3 (path-style).",
        "",
        "Просим выдать ключ и секрет (Basic) для тестового LRS "
        f"{settings.test_lrs_url} и подтвердить профиль высказываний проекта.",
    ])


def production_letter(loaded: LoadedSettings, settings: U2035Settings, connection: Connection) -> str:
    """Stage 3: the production access request, naming the statement the test LRS keeps."""
    return "\n".join([
        "Университет 2035",
        "",
        "Заявка на подключение к продуктивному контуру",
        "",
        f"Организация: {settings.organisation or '<portals.u2035.organisation не задано>'}",
        f"Ответственный: {settings.contact or '<portals.u2035.contact не задано>'}",
        f"Проект: {settings.project or '<portals.u2035.project не задано>'}",
        f"Тестовый контур пройден: высказывание {connection.test_statement_id} записано в {settings.test_lrs_url}.",
        "",
        "Просим выдать для продуктивного контура: адрес LRS, ключ и секрет (Basic); адрес хранилища S3, бакет, ключ "
        "доступа (access key), секретный ключ (secret key) и идентификатор пользователя S3.",
    ])


# -- checks --------------------------------------------------------------------------------------------------------
def probe_statement(loaded: LoadedSettings, settings: U2035Settings) -> dict[str, Any]:
    """A harmless statement: the bufsync service itself experienced the site (no learner's data)."""
    from bufsync.portals.u2035.statements import actor, timestamp, verb
    site = settings.profile.object_base or loaded.moodle.url or "https://bufsync.invalid"
    return {"id": str(uuid.uuid4()), "actor": actor(settings, PROBE_ACTOR),
            "verb": verb(settings, "http://adlnet.gov/expapi/verbs/experienced"),
            "object": {"objectType": "Activity", "id": site,
                       "definition": {"name": {settings.profile.language: "bufsync: проверка подключения"}}},
            "timestamp": timestamp(datetime.now(UTC)), "version": "1.0.3"}


def check_lrs(url: str, key: str, secret: str, statement: dict[str, Any], timeout: float,
              read_back: bool = False) -> tuple[str | None, str | None]:
    """(the id the LRS kept, None) or (None, what went wrong, in the LRS's own words)."""
    from bufsync.portals.u2035.lrs import LrsClient, LrsError, LrsRefused, LrsUnavailable
    with LrsClient(url, key, secret, timeout=timeout) as lrs:
        try:
            lrs.recent(limit=1)
            answer = lrs.post([statement])
            if answer.status not in (200, 204):
                return None, f"{url}: POST /statements: HTTP {answer.status}: {answer.message or answer.body}"
            kept = answer.ids[0] if answer.ids else statement["id"]
            if read_back and lrs.get(kept) is None:
                return None, f"{url}: высказывание {kept} принято, но не читается обратно (GET ?statementId=)"
            return kept, None
        except LrsRefused as exc:
            return None, f"{url}: LRS не принял ключ и секрет: {exc}"
        except LrsUnavailable as exc:
            return None, f"{url}: LRS недоступен: {exc}"
        except LrsError as exc:
            return None, f"{url}: {exc}"


def check_s3(settings: U2035Settings) -> str | None:
    """None, or what the S3 storage answered a write, read back and delete of a small object."""
    from bufsync.portals.u2035.storage import S3Failed
    with store_for(settings) as store:
        try:
            store.check()
        except S3Failed as exc:
            return f"S3 {settings.s3_endpoint}, бакет {settings.s3_bucket}: {exc}"
    return None


def lrs_for(settings: U2035Settings) -> Any:
    """The production LRS's client (stage 4's address, key and secret)."""
    from bufsync.portals.u2035.lrs import LrsClient
    assert settings.lrs_url and settings.key is not None and settings.secret is not None
    return LrsClient(settings.lrs_url, settings.key.get_secret_value(), settings.secret.get_secret_value(),
                     timeout=settings.timeout)


def store_for(settings: U2035Settings) -> Any:
    from bufsync.portals.u2035.storage import S3Store
    assert settings.s3_endpoint and settings.s3_bucket and settings.s3_access_key and settings.s3_secret_key
    return S3Store(settings.s3_endpoint, settings.s3_bucket, settings.s3_access_key.get_secret_value(),
                   settings.s3_secret_key.get_secret_value(), region=settings.s3_region, acl=settings.s3_acl or None,
                   public_base=settings.s3_public_base, timeout=settings.timeout)


# -- the wizard ----------------------------------------------------------------------------------------------------
class Prompter(Protocol):
    """How `connect` talks to the administrator: a terminal, or the flags of a script."""

    def show(self, text: str) -> None: ...

    def received(self, stage: int) -> bool: ...

    def ask(self, key: str, label: str, secret: bool, current: str | None) -> str | None: ...


@dataclass
class Scripted:
    """Every answer given as a flag: `received` moves on from the stage connect started at (1 or 3) only; with
    `every`, from both letters (a demo or a benchmark that has every answer walks the four stages at once)."""

    values: dict[str, str] = field(default_factory=dict)
    confirm: bool = False
    out: Callable[[str], None] = print
    every: bool = False
    _used: bool = False

    def show(self, text: str) -> None:
        self.out(text)

    def received(self, stage: int) -> bool:
        if self.confirm and (self.every or not self._used):
            self._used = True
            return True
        return False

    def ask(self, key: str, label: str, secret: bool, current: str | None) -> str | None:
        return self.values.get(key, current)


def connect(loaded: LoadedSettings, prompter: Prompter, stage: int | None = None) -> Connection:
    """Walk the stages from where the connection stands (or from `stage`, one already opened) until one needs
    something the administrator does not have yet, a check fails, or the connection is active."""
    from bufsync.db import connect_buffer
    from bufsync.portals.runs import state_tables
    settings = section(loaded)
    with connect_buffer(loaded) as engine:
        table = state_tables(engine, ("sync_u2035_connection",))["sync_u2035_connection"]
        state = read(engine, table)
        if state.active:
            raise ConfigError("подключение к Университету 2035 активно: его настройки нельзя менять; чтобы пройти "
                              "этапы заново, выполните `bufsync u2035 disable`")
        if stage is not None:
            if not 1 <= stage <= state.opened:
                raise ConfigError(f"этап {stage} ещё не открыт: можно вернуться к этапам 1–{state.opened}")
            state.stage = stage
        while True:
            if state.stage in (1, 3):
                letter = (request_letter(loaded, settings) if state.stage == 1
                          else production_letter(loaded, settings, state))
                prompter.show(letter)
                if not prompter.received(state.stage):
                    state.status = IN_PROGRESS
                    write(engine, table, state)
                    return state
                _advance(state)
                write(engine, table, state)
                continue
            loaded, settings = _answers(loaded, settings, prompter, STAGE_KEYS[state.stage])
            state.checked_at = now_utc()
            if state.stage == 2:
                assert settings.test_key is not None and settings.test_secret is not None  # _answers asked
                kept, problem = check_lrs(settings.test_lrs_url, settings.test_key.get_secret_value(),
                                          settings.test_secret.get_secret_value(), probe_statement(loaded, settings),
                                          settings.timeout)
                if problem is None:
                    state.test_statement_id = kept
            else:
                assert settings.lrs_url and settings.key is not None and settings.secret is not None
                _, problem = check_lrs(settings.lrs_url, settings.key.get_secret_value(),
                                       settings.secret.get_secret_value(), probe_statement(loaded, settings),
                                       settings.timeout, read_back=True)
                problem = problem or check_s3(settings)
            if problem is not None:
                state.status, state.last_error = DATA_ERROR, problem
                write(engine, table, state)
                prompter.show(f"Ошибка данных: {problem}")
                return state
            state.last_error = None
            if state.stage == 4:
                state.status, state.settings_hash, state.activated_at = ACTIVE, settings_hash(settings), now_utc()
                write(engine, table, state)
                return state
            _advance(state)
            write(engine, table, state)


def disable(loaded: LoadedSettings) -> tuple[Connection, int]:
    """Back to «Не выполнен»: nothing is sent any more; the queued statements are cancelled and their facts wait
    (state held) to be queued again, under the same ids, once a new connection is active. Returns the old state and
    how many queue items were cancelled."""
    from bufsync.db import connect_buffer
    from bufsync.portals.runs import state_tables
    from bufsync.portals.u2035.scenario import hold_all
    with connect_buffer(loaded) as engine:
        tables = state_tables(engine, ("sync_u2035_connection", "sync_u2035_statements", "sync_queue"))
        before = read(engine, tables["sync_u2035_connection"])
        cancelled = hold_all(engine, tables)
        write(engine, tables["sync_u2035_connection"], Connection())
    return before, cancelled


def status(loaded: LoadedSettings) -> Connection:
    from bufsync.db import connect_buffer
    from bufsync.portals.runs import state_tables
    with connect_buffer(loaded) as engine:
        return read(engine, state_tables(engine, ("sync_u2035_connection",))["sync_u2035_connection"])


def statement_counts(loaded: LoadedSettings) -> dict[str, int]:
    """The footprint's statements by state (queued, sent, error, held)."""
    from bufsync.db import connect_buffer
    from bufsync.portals.runs import state_tables
    with connect_buffer(loaded) as engine:
        t = state_tables(engine, ("sync_u2035_statements",))["sync_u2035_statements"]
        with engine.connect() as conn:
            return {str(k): int(n) for k, n in conn.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state))}


def section(loaded: LoadedSettings) -> U2035Settings:
    settings: U2035Settings = loaded.settings.portals.u2035  # type: ignore[attr-defined]
    return settings


def _advance(state: Connection) -> None:
    state.stage += 1
    state.opened = max(state.opened, state.stage)
    state.status = IN_PROGRESS


def _answers(loaded: LoadedSettings, settings: U2035Settings, prompter: Prompter, keys: tuple[str, ...]
             ) -> tuple[LoadedSettings, U2035Settings]:
    """Each key of the stage asked for (the current value offered); the new ones written into the config file,
    except those the environment sets (the environment wins over the file, so writing them would change nothing)."""
    # BUFSYNC_PORTALS_U2035_<KEY> and BUFSYNC_U2035_<KEY> (the name the sandbox prints) alike
    named = env_names() | {env: ("portals",) + path for env, path in env_names(type(settings), ("u2035",)).items()}
    from_env = {path[-1]: env for env, path in named.items() if path[:-1] == SECTION and os.environ.get(env)}
    changed: dict[str, str] = {}
    missing = []
    for key in keys:
        value = getattr(settings, key)
        current = value.get_secret_value() if isinstance(value, SecretStr) else value
        if key in from_env:
            if current is None:
                missing.append(key)
            continue
        answer = prompter.ask(key, LABELS[key], key in SECRET_KEYS, current)
        if answer in (None, "") and key != "s3_user_id":
            missing.append(key)
        elif answer != current and answer is not None:
            changed[key] = answer
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise ConfigError(f"для этапа нужны {', '.join(LABELS[k] for k in missing)}: ответьте на вопросы или "
                          f"передайте {flags}")
    if not changed:
        return loaded, settings
    file = store_answers(loaded, changed)
    reloaded = load_settings(file)
    return reloaded, section(reloaded)


def store_answers(loaded: LoadedSettings, values: dict[str, str]) -> Path:
    """Write `portals.u2035.<key>: value` into the config file, keeping its comments and order (a round trip
    through ruamel.yaml); the file is made readable by its owner only, as it holds secrets."""
    from ruamel.yaml import YAML
    file = loaded.file or Path(DEFAULT_CONFIG_NAME)
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(file.read_text(encoding="utf-8")) if file.exists() else None
    if data is None:
        data = {}
    node = data
    for part in SECTION:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    for key, value in values.items():
        node[key] = value
    # validated before it is written: a bad answer fails with the key and what was expected, the file unchanged
    probe = _plain(data)
    from bufsync.config import Settings
    from bufsync.validation import validate
    try:
        validate(Settings, probe, None)
    except ConfigError as exc:
        raise ConfigError([Problem(file, p.key, p.message) for p in exc.problems]) from None
    tmp = file.with_name(file.name + ".tmp")
    # made readable by its owner only from the start: it holds secrets before it replaces the file
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
        yaml.dump(data, out)
    tmp.chmod(0o600)  # a temporary file left by a crashed write keeps its older mode
    tmp.replace(file)
    return file


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
