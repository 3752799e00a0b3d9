"""Exceptions that carry an exit code, so the CLI maps them without guessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bufsync.secrets import redact

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_CONFIG = 2
EXIT_GUARD = 3
EXIT_UNAVAILABLE = 4


class BufsyncError(Exception):
    """Base of the errors the CLI reports without a traceback."""

    exit_code = EXIT_CONFIG

    def __str__(self) -> str:
        return redact(super().__str__())


@dataclass(frozen=True)
class Problem:
    """One precise complaint about a file: where, what was found, what was expected."""

    file: Path | None
    key: str
    message: str
    line: int | None = None

    def render(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return redact(f"{where}{key}{self.message}")


class ConfigError(BufsyncError):
    """Bad configuration or mapping: the run must not start (exit 2)."""

    exit_code = EXIT_CONFIG

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(None, "", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = problems
        super().__init__("\n".join(p.render() for p in problems))


class UnavailableError(BufsyncError):
    """A remote (database, Moodle, portal) cannot be reached (exit 4)."""

    exit_code = EXIT_UNAVAILABLE


class CheckFailed(BufsyncError):
    """`bufsync sql render --check` found a difference (exit 1)."""

    exit_code = EXIT_REJECTED
