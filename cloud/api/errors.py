"""The API's own errors; `app.py` maps each to an HTTP status (and FHIR routes to an OperationOutcome)."""

from __future__ import annotations

import datetime as dt


class ApiError(Exception):
    """Base of the errors a route may raise on purpose."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticatedError(ApiError):
    """No valid session (missing, unknown, expired or revoked token)."""

    status_code = 401


class ForbiddenError(ApiError):
    """Authenticated, but the user's roles do not allow this route."""

    status_code = 403


class NotFoundError(ApiError):
    """No such resource, or one outside the user's site scope (never told apart, to not leak existence)."""

    status_code = 404


class NotAcceptableError(ApiError):
    """The client asked for a representation we do not produce (e.g. FHIR XML)."""

    status_code = 406


class InvalidParameterError(ApiError):
    """A request parameter is malformed or out of range; `field` names it."""

    status_code = 422

    def __init__(self, field: str, message: str, *, location: str = "query") -> None:
        super().__init__(message)
        self.field = field
        self.location = location


class RateLimitedError(ApiError):
    """Too many failed logins for this username and address."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: dt.timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after
