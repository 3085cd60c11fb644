"""Errors raised by the client, one class per gRPC status code the server uses."""
from __future__ import annotations

import re
from typing import Optional

import pyarrow as pa
import pyarrow.flight as flight


class Error(Exception):
    """Any error the server (or the connection to it) reported.

    `code` is the gRPC status name (``"NOT_FOUND"``, ...) and `message` the server's
    message, without pyarrow's decorations.
    """

    code: str = "UNKNOWN"

    def __init__(self, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(Error, KeyError):
    """An unknown collection, item, version or snapshot (``NOT_FOUND``)."""

    code = "NOT_FOUND"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class InvalidArgument(Error, ValueError):
    """A bad name, request, time, filter, schema or a broken rule (``INVALID_ARGUMENT``)."""

    code = "INVALID_ARGUMENT"


class AlreadyExists(Error):
    """The item (or snapshot) exists already (``ALREADY_EXISTS``)."""

    code = "ALREADY_EXISTS"


class Conflict(Error):
    """A commit lost its race (``ABORTED``) or a precondition failed (``FAILED_PRECONDITION``)."""

    code = "ABORTED"


class Unauthenticated(Error):
    """No token, or a bad, revoked or expired one; a wrong password (``UNAUTHENTICATED``)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(Error):
    """The token's grants do not allow the call (``PERMISSION_DENIED``)."""

    code = "PERMISSION_DENIED"


class ResourceExhausted(Error):
    """A server limit was hit (budget, calls, message size, disk): retry later."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(Error):
    """The server cannot be reached (``UNAVAILABLE``)."""

    code = "UNAVAILABLE"


class Timeout(Error):
    """A call took longer than its deadline (``DEADLINE_EXCEEDED``)."""

    code = "DEADLINE_EXCEEDED"


# pyarrow.flight turns a gRPC status into "Flight returned <name> error, with message:
# <msg>" (plus decorations); the name is the only trace of some codes (ABORTED, ...).
_GRPC_NAMES = {
    "not found": NotFound,
    "invalid argument": InvalidArgument,
    "already exists": AlreadyExists,
    "aborted": Conflict,
    "precondition failed": Conflict,
    "failed precondition": Conflict,
    "unauthenticated": Unauthenticated,
    "unauthorized": PermissionDenied,
    "permission denied": PermissionDenied,
    "timed out": Timeout,
    "resource exhausted": ResourceExhausted,
    "unavailable": Unavailable,
    "deadline exceeded": Timeout,
}
_CODES = {
    "precondition failed": "FAILED_PRECONDITION",
    "failed precondition": "FAILED_PRECONDITION",
}
_BY_CLASS = [
    (flight.FlightUnauthenticatedError, Unauthenticated),
    (flight.FlightUnauthorizedError, PermissionDenied),
    (flight.FlightUnavailableError, Unavailable),
    (flight.FlightTimedOutError, Timeout),
    (pa.ArrowKeyError, NotFound),
    (pa.ArrowInvalid, InvalidArgument),
]
_GRPC = re.compile(r"(?:gRPC|Flight) returned ([a-z -]+?) error, with message: (.*)", re.S)
_DECORATION = re.compile(r"\.? ?(gRPC client debug context|Detail|Client context): .*$", re.S)


def translate(exc: BaseException) -> BaseException:
    """The `flightstore.Error` for a pyarrow / Flight exception (others unchanged)."""
    if isinstance(exc, Error) or not isinstance(exc, (flight.FlightError, pa.ArrowException)):
        return exc
    text = str(exc)
    match = _GRPC.search(text)
    if match:
        name, text = match.group(1), match.group(2)
        if name in _GRPC_NAMES:
            cls = _GRPC_NAMES[name]
            return cls(_DECORATION.sub("", text).strip(), _CODES.get(name, cls.code))
    message = _DECORATION.sub("", text).strip()
    for source, cls in _BY_CLASS:
        if isinstance(exc, source):
            return cls(message)
    return Error(message, "INTERNAL" if isinstance(exc, flight.FlightInternalError) else "UNKNOWN")
