"""Request and response bodies of the JSON API (storage rows stay in queries.py; these are the wire shapes)."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class LoginIn(BaseModel):
    """Credentials for POST /api/auth/login."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(_Out):
    """The calling user (GET /api/me)."""

    user_id: uuid.UUID
    username: str
    display_name: str
    roles: list[str]
    site_id: str | None


class LoginOut(_Out):
    """A new session. The token is also set as an HttpOnly cookie for the dashboard."""

    token: str
    token_type: str = "bearer"
    expires_at: dt.datetime
    user: UserOut


class LatestVitalOut(_Out):
    """A patient's latest value of one kind."""

    kind: str
    time: dt.datetime
    value: float
    unit: str
    loinc: str | None
    display_zh: str
    display_en: str
    quality: int
    quality_names: list[str]
    device_id: str | None


class News2Out(_Out):
    """A NEWS2 score; `complete` is False when some parameters were missing (listed in `missing`)."""

    time: dt.datetime
    total: int
    risk: str
    subscores: dict[str, int]
    complete: bool
    missing: list[str]


class PatientOut(_Out):
    """One row of the patient list."""

    patient_id: str
    site_id: str
    site_name: str
    ward: str | None
    bed: str | None
    latest: list[LatestVitalOut]
    news2: News2Out | None


class PatientListOut(_Out):
    """GET /api/patients."""

    patients: list[PatientOut]


class LatestVitalsOut(_Out):
    """GET /api/patients/{id}/vitals/latest."""

    patient_id: str
    vitals: list[LatestVitalOut]


class BucketOut(_Out):
    """One downsampled bucket [start, start + bucket_seconds)."""

    start: dt.datetime
    min: float
    max: float
    avg: float
    count: int


class SeriesOut(_Out):
    """GET /api/patients/{id}/vitals: non-empty buckets only (a missing bucket is a gap in the data)."""

    patient_id: str
    kind: str
    unit: str
    start: dt.datetime  # effective range: the request's, widened to whole rollup rows when read from one
    end: dt.datetime
    bucket_seconds: float
    source: str  # raw, 1m, 15m or 1h
    buckets: list[BucketOut]


class News2HistoryOut(_Out):
    """GET /api/patients/{id}/news2."""

    patient_id: str
    start: dt.datetime
    end: dt.datetime
    step_seconds: float
    points: list[News2Out]


class ModelResponse(Response):
    """A JSON response rendered by pydantic itself (routes that return many items skip FastAPI's
    re-validation of the return value; `response_model` still documents the shape)."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        assert isinstance(content, BaseModel)
        return content.model_dump_json().encode("utf-8")
