"""VK Сферум as the core sees it: settings, state tables, its scenario run (chats, members, lessons), its queue
handler, the token check and the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from bufsync.portals import Emulator, Portal

if TYPE_CHECKING:  # imported where used: listing the CLI's commands loads this module and nothing heavy
    import click
    import sqlalchemy as sa

    from bufsync.config import LoadedSettings
    from bufsync.portals.sferum.client import VkClient
    from bufsync.portals.sferum.settings import SferumSettings
    from bufsync.report import PortalRun

# what each kind of token may call (VK's schema, docs/portals/sferum.md): `bufsync check` says it
MAY_CALL = {
    "user": "messages.createChat, addChatUser, removeChatUser, getConversationMembers, editChat, send; calls.start, "
            "calls.forceFinish",
    "group": "messages.createChat, removeChatUser, getConversationMembers, editChat, send (not addChatUser, not "
             "calls.*)",
    "service": "users.get, groups.getById (no messages.*, no calls.*)",
}


# VK counts requests as they arrive: a send stamped a window after another may arrive a little sooner (the
# commit, the network, the scheduler), so the shared window is kept this much longer than VK's second
RATE_MARGIN = 0.1


def client_for(settings: SferumSettings, token: str, kind: str = "user", engine: sa.Engine | None = None) -> VkClient:
    """A VK client for one token; with an engine, its rate limit is shared through the buffer with every process
    using the token (dispatchers on other hosts, the scenario run)."""
    from bufsync.portals.sferum.client import VkClient
    rate = settings.rate_user if kind == "user" else settings.rate_group
    limit = None
    if engine is not None and rate > 0:
        import sqlalchemy as sa

        from bufsync.queue.limiter import SharedRateLimit, token_key
        from bufsync.state.tables import add_state_tables
        table = add_state_tables(sa.MetaData())["sync_rate_limits"]
        limit = SharedRateLimit(engine, table, token_key("vk", token), rate, window=1.0 + RATE_MARGIN)
    return VkClient(settings.url, token, version=settings.version, rate=rate, timeout=settings.timeout, limit=limit)


def organiser_of(client: VkClient, settings: SferumSettings) -> int:
    """The VK id of the user token's owner: the setting, or users.get."""
    if settings.organiser_id is not None:
        return settings.organiser_id
    from bufsync.errors import ConfigError
    answer = client.call("users.get", {})
    if not answer:
        raise ConfigError("portals.sferum.user_token is not a user's token (users.get names nobody): it must be the "
                          "token of the organiser's Сферум profile")
    return int(answer[0]["id"])


class SferumPortal(Portal):
    name: ClassVar[str] = "sferum"
    title: ClassVar[str] = "VK Сферум"
    required: ClassVar[tuple[str, ...]] = ("user_token",)
    scenario_tables: ClassVar[tuple[str, ...]] = ("sync_sferum_chats", "sync_sferum_members", "sync_sferum_calls",
                                                  "sync_queue")
    view_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("chat_key", "chat_key"), ("title", "title"), ("chat_id", "chat_id"), ("user_id", "vk_id"),
        ("person", "person_external_id"), ("lesson_id", "lesson_id"), ("call_id", "call_id"))

    def settings_class(self) -> type[SferumSettings]:
        from bufsync.portals.sferum.settings import SferumSettings
        return SferumSettings

    def add_tables(self, metadata: sa.MetaData) -> dict[str, sa.Table]:
        from bufsync.portals.sferum import tables
        return tables.add_tables(metadata)

    def views(self, tables: dict[str, sa.Table]) -> list[tuple[str, sa.Select[Any], str]]:
        from bufsync.portals.sferum.tables import views
        return views(tables)

    def pending_keys(self, state: dict[str, sa.Table]) -> list[sa.Select[Any]]:
        import sqlalchemy as sa
        return [sa.select(state[name].c.pending_key).where(state[name].c.pending_key.is_not(None))
                for name in ("sync_sferum_chats", "sync_sferum_members", "sync_sferum_calls")]

    def handler(self, loaded: LoadedSettings) -> tuple[Any, Callable[[], None]]:
        from bufsync.db import create_buffer_engine
        from bufsync.portals.sferum.dispatch import SferumHandler, held_chats
        from bufsync.portals.sferum.tables import add_tables
        settings = self.configured(loaded)
        import sqlalchemy as sa
        engine = create_buffer_engine(loaded.buffer_url)
        client = client_for(settings, settings.user_token.get_secret_value(), "user", engine)
        known: list[int] = []

        def organiser() -> int:
            if not known:
                known.append(organiser_of(client, settings))
            return known[0]
        from bufsync.state.tables import add_state_tables
        chats = add_tables(sa.MetaData())["sync_sferum_chats"]
        queue = add_state_tables(sa.MetaData())["sync_queue"]
        handler = SferumHandler(client, organiser, held_chats(engine, chats, queue), settings.execute)

        def close() -> None:
            handler.close()
            engine.dispose()
        return handler, close

    def run(self, loaded: LoadedSettings, job: str | None = None, trigger: str = "manual",
            on_start: Callable[[int], None] | None = None, now: datetime | None = None) -> PortalRun:
        """The chats (created, renamed, members in step) and the lessons' calls, once."""
        from bufsync.portals.runs import recorded
        settings = self.configured(loaded)
        zone = ZoneInfo(loaded.settings.timezone)

        def work(engine: sa.Engine, state: dict[str, sa.Table], report: PortalRun) -> None:
            from bufsync.portals.sferum.scenario import run_scenarios
            result = run_scenarios(engine, state, loaded, settings, zone, now)
            report.counts.update(result.counts)
            report.problems = result.problems
            report.outcome = "rejected" if result.problems else "ok"

        return recorded(loaded, self.name, self.name, self.scenario_tables,
                        {"chats": settings.chats, "lessons": settings.lessons.enabled}, work, job, trigger, on_start)

    def check(self, loaded: LoadedSettings) -> tuple[bool | None, str]:
        from bufsync.portals.sferum.client import AnswerLost, VkError
        settings = self.settings(loaded)
        tokens = [(key, kind, getattr(settings, key)) for key, kind in
                  (("user_token", "user"), ("group_token", "group"), ("service_token", "service"))
                  if getattr(settings, key) is not None]
        if settings.user_token is None:
            return None, "not configured (BUFSYNC_SFERUM_USER_TOKEN)"
        lines, ok = [], True
        for key, expected, secret in tokens:
            client = client_for(settings, secret.get_secret_value(), expected)
            try:
                kind, who = _token_kind(client)
            except (VkError, AnswerLost) as exc:
                ok = False
                lines.append(f"portals.sferum.{key}: refused: {getattr(exc, 'reason', exc)}")
                continue
            finally:
                client.close()
            if kind != expected:
                ok = False
                lines.append(f"portals.sferum.{key}: a {kind} token ({who}), expected a {expected} token")
                continue
            lines.append(f"portals.sferum.{key}: {kind} token of {who}; may call {MAY_CALL[kind]}")
        return ok, f"{settings.url}: " + "; ".join(lines)

    def sandbox_options(self) -> list[click.Option]:
        import click
        return [
            click.Option(["--vk-port"], default=18083, show_default=True,
                         help="Port of the sandbox VK API for Сферум (0: any free port)."),
            click.Option(["--no-vk"], is_flag=True, help="No sandbox VK API."),
            click.Option(["--vk-fault", "vk_faults"], multiple=True, metavar="KIND[:RATE[:SECONDS]]",
                         help="Faults of the sandbox VK API, as --fault."),
            click.Option(["--vk-people"], type=click.IntRange(min=0), default=10000, show_default=True,
                         help="VK users the sandbox knows: ids 1..N (each a person who may be added to chats)."),
        ]

    def sandbox_ports(self, options: dict[str, Any]) -> list[tuple[int, str, str]]:
        if "vk_port" not in options or options.get("no_vk"):
            return []
        return [(int(options["vk_port"]), "sandbox VK API", "--vk-port")]

    def start_sandbox(self, options: dict[str, Any], data: Path | None) -> Emulator:
        """The VK API beside the sandbox Moodle; its organiser token is what `bufsync sferum run` uses."""
        from bufsync.sandbox.faults import parse_fault
        from bufsync.sandbox.vk import SandboxConfig, start
        from bufsync.sandbox.vk.api import Person
        config = SandboxConfig()
        kept = data / "vk.json" if data is not None else None
        if kept is not None:  # the tokens stay what the user pasted across restarts (the chats live in memory)
            import json
            values = json.loads(kept.read_text(encoding="utf-8")) if kept.is_file() else {}
            for name, token in config.tokens.items():
                token.value = values.get(name, token.value)
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(json.dumps({n: t.value for n, t in config.tokens.items()}), encoding="utf-8")
            kept.chmod(0o600)
        known = {p.id for p in config.people}
        config.people += [Person(n, f"Пользователь {n}", "Песочница") for n in range(1, int(options.get("vk_people")
                                                                                           or 0) + 1)
                          if n not in known]
        server = start(port=int(options["vk_port"]), config=config,
                       faults=[parse_fault(f) for f in options.get("vk_faults") or ()])
        user = next(t for t in config.tokens.values() if t.kind == "user")
        return Emulator(server, "VK API", {"BUFSYNC_SFERUM_URL": server.url, "BUFSYNC_SFERUM_USER_TOKEN": user.value,
                                           "BUFSYNC_SFERUM_ORGANISER_ID": str(user.owner_id)},
                        f"in memory (tokens in {kept})" if kept is not None else "in memory")

    def cli_group(self) -> click.Group:
        import click

        from bufsync.cli import pass_state
        from bufsync.portals import run_command

        @click.group(self.name)
        def group() -> None:
            """VK Сферум: chats kept in step with the contingent, online lessons as calls."""

        group.add_command(run_command(self, "Create and rename chats, queue members to add and remove, start and "
                                            "finish lesson calls."))

        @group.command("chats")
        @click.option("--json", "as_json", is_flag=True)
        @pass_state
        def chats(state: Any, as_json: bool) -> None:
            """Each chat bufsync keeps: its VK id, state, members, people without a VK ID, the last error."""
            import json
            rows = self.chats(state.loaded)
            if as_json:
                click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
                return
            if not rows:
                click.echo("no Сферум chats yet")
            for r in rows:
                click.echo(f"{r['chat_key'][:30]:<30} {r['title'][:30]:<30} {r['state']:<9} "
                           f"chat {r['chat_id'] or '-':<6} members {r['members']}/{r['expected']} "
                           f"without VK ID {r['without_vk']}" + (f"\n    {r['last_error']}" if r["last_error"] else ""))

        return group

    def chats(self, loaded: LoadedSettings) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        from bufsync.db import connect_buffer
        from bufsync.portals.runs import state_tables
        with connect_buffer(loaded) as engine:
            chats = state_tables(engine, ("sync_sferum_chats",))["sync_sferum_chats"]
            with engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.select(chats).order_by(chats.c.chat_key))]


def _token_kind(client: VkClient) -> tuple[str, str]:
    """What a token is, by what VK answers it: users.get names a user token's owner; groups.getById without ids
    names a community token's community; a service token gets neither."""
    from bufsync.portals.sferum.client import VkError
    users = client.call("users.get", {})
    if users:
        person = users[0]
        return "user", f"{person.get('first_name', '')} {person.get('last_name', '')} (VK id {person['id']})".strip()
    try:
        groups = client.call("groups.getById", {})
    except VkError as exc:
        if exc.code == 100:
            return "service", "an application"
        raise
    found = groups.get("groups") if isinstance(groups, dict) else groups
    community = (found or [{}])[0]
    return "group", f"community «{community.get('name', '?')}» (id {community.get('id', '?')})"


def today_local(zone: ZoneInfo, now: datetime | None = None) -> Any:
    return (now.replace(tzinfo=UTC) if now else datetime.now(UTC)).astimezone(zone).date()
