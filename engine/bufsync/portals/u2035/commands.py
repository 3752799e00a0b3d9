"""`bufsync u2035 ...`: connect (the four stages, on a terminal or by flags), status, disable, run. Each command
calls one typed function of the portal's modules; this module only talks to the administrator."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from bufsync.portals.u2035.stages import STAGE_KEYS

if TYPE_CHECKING:
    from bufsync.portals.u2035.portal import U2035Portal

ANSWER_KEYS = STAGE_KEYS[2] + STAGE_KEYS[4]


class Terminal:
    """The wizard on a terminal: letters printed, questions asked (secrets hidden, never echoed back)."""

    def __init__(self, values: dict[str, str], received: bool) -> None:
        self.values = values
        self.confirmed = received

    def show(self, text: str) -> None:
        click.echo(text)
        click.echo("")

    def received(self, stage: int) -> bool:
        if self.confirmed:
            self.confirmed = False
            return True
        what = "ключ и секрет тестового контура" if stage == 1 else "данные продуктивного контура"
        return click.confirm(f"Письмо отправлено и {what} получены («данные у меня»)?", default=False)

    def ask(self, key: str, label: str, secret: bool, current: str | None) -> str | None:
        if key in self.values:
            return self.values[key]
        if secret:
            hint = " (Enter — оставить прежний)" if current else ""
            answer = click.prompt(f"{label.capitalize()}{hint}", default="", hide_input=True, show_default=False)
            return answer or current
        return str(click.prompt(label.capitalize(), default=current or "", show_default=bool(current))) or None


def _answer_options(func: Any) -> Any:
    for key in reversed(ANSWER_KEYS):
        func = click.option("--" + key.replace("_", "-"), key, metavar="VALUE",
                            help=f"answer for portals.u2035.{key} (stage {2 if key in STAGE_KEYS[2] else 4})")(func)
    return func


def group(portal: U2035Portal) -> click.Group:
    from bufsync.cli import pass_state
    from bufsync.portals import run_command

    @click.group(portal.name)
    def u2035() -> None:
        """Университет 2035: the digital footprint as xAPI statements to its LRS and files to S3."""

    @u2035.command("connect")
    @click.option("--stage", type=click.IntRange(1, 4), help="Go back to this stage (one already opened).")
    @click.option("--received", is_flag=True,
                  help="The data the letter of the current stage (1 or 3) asks for is with you: move on.")
    @_answer_options
    @pass_state
    def connect(state: Any, stage: int | None, received: bool, **answers: str | None) -> None:
        """The four stages: request letter, test contour check, production letter, production LRS and S3 check.

        On a terminal it asks; every answer is also a flag, for scripts. Progress is kept: run it again to go on.
        """
        from bufsync.portals.u2035 import connection
        values = {k: v for k, v in answers.items() if v is not None}
        prompter: connection.Prompter = (Terminal(values, received) if sys.stdin.isatty()
                                         else connection.Scripted(values, received, out=click.echo))
        result = connection.connect(state.loaded, prompter, stage)
        click.echo(f"Университет 2035: «{result.text}»" + (f" — {result.last_error}" if result.last_error else ""))
        sys.exit(0 if result.status != connection.DATA_ERROR else 1)

    @u2035.command("status")
    @click.option("--json", "as_json", is_flag=True)
    @pass_state
    def status(state: Any, as_json: bool) -> None:
        """The connection's status and stage, and the footprint's statements by state."""
        from bufsync.portals.u2035 import connection
        found = connection.status(state.loaded)
        counts = connection.statement_counts(state.loaded)
        if as_json:
            click.echo(json.dumps({**found.as_dict(), "sending": connection.frozen_problem(
                connection.section(state.loaded), found) is None, "statements": counts}, ensure_ascii=False, indent=2,
                                  default=str))
            return
        click.echo(f"Университет 2035: {connection.describe(connection.section(state.loaded), found)}; этап "
                   f"{found.stage} из 4, открыто до {found.opened}")
        if found.test_statement_id:
            click.echo(f"  пробное высказывание тестового LRS: {found.test_statement_id}")
        if found.last_error:
            click.echo(f"  последняя ошибка: {found.last_error}")
        if counts:
            click.echo("  высказывания: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    @u2035.command("disable")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @pass_state
    def disable(state: Any, yes: bool) -> None:
        """Stop sending and reset the connection to «Не выполнен» (the settings may be changed again)."""
        from bufsync.portals.u2035 import connection
        if not yes:
            click.confirm("Отключить Университет 2035? Отправка следа прекратится, подключение придётся пройти "
                          "заново", abort=True)
        before, cancelled = connection.disable(state.loaded)
        click.echo(f"Университет 2035: было «{before.text}», теперь «Не выполнен»; отменено в очереди: {cancelled}")

    u2035.add_command(run_command(portal, "Read the footprint from Moodle and queue the new and changed statements "
                                          "(sent only once active)."))

    return u2035
