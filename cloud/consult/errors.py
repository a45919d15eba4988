"""Consultation errors the API maps to HTTP statuses (through cloud.api.errors.ApiError)."""

from __future__ import annotations

from cloud.api.errors import ApiError


class ConflictError(ApiError):
    """The consultation is in the wrong state for the request (an (event, state) pair not in the table)."""

    status_code = 409


class SigningUnavailableError(ApiError):
    """The expert's signing key cannot be used now (identity keys unavailable); nothing was stored."""

    status_code = 503
