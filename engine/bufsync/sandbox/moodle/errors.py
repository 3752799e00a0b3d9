"""Moodle's exceptions as the web-service layer serialises them."""

from __future__ import annotations


class WsError(Exception):
    """One Moodle exception: class name, errorcode, message, debuginfo (shown only in debug mode)."""

    def __init__(self, exception: str, errorcode: str | None, message: str, debuginfo: str | None = None) -> None:
        super().__init__(message)
        self.exception = exception
        self.errorcode = errorcode
        self.message = message
        self.debuginfo = debuginfo


def invalid_parameter(debuginfo: str | None = None) -> WsError:
    return WsError("core\\exception\\invalid_parameter_exception", "invalidparameter",
                   "Invalid parameter value detected", debuginfo)


def invalid_response(debuginfo: str | None = None) -> WsError:
    return WsError("core\\exception\\invalid_response_exception", "invalidresponse",
                   "Invalid response value detected", debuginfo)


def moodle_exception(errorcode: str, message: str, debuginfo: str | None = None) -> WsError:
    return WsError("core\\exception\\moodle_exception", errorcode, message, debuginfo)


def coding_error(detail: str) -> WsError:
    return WsError("core\\exception\\coding_exception", "codingerror",
                   f"Coding error detected, it must be fixed by a programmer: {detail}", None)


def missing_record(errorcode: str, message: str, table: str, where: str, values: list) -> WsError:
    """dml_missing_record_exception; debuginfo is the SQL and its parameters, as Moodle prints them."""
    params = "".join(f"  {i} => {_php_export(v)},\n" for i, v in enumerate(values))
    return WsError("dml_missing_record_exception", errorcode, message,
                   f"SELECT * FROM {{{table}}} WHERE {where}\n[array (\n{params})]")


def _php_export(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
