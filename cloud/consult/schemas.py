"""Request and response bodies of the consultation, ICD-10 and triage API (wire shapes only)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloud.triage.lexicon import Urgency

_UID = r"^[0-9]+(\.[0-9]+)*$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class DraftIn(_In):
    """A new consultation (POST /api/consultations)."""

    patient_id: str = Field(min_length=1, max_length=64)
    specialty: str | None = Field(default=None, max_length=40)
    icd10_codes: list[str] = Field(default_factory=list, max_length=10)
    language: str = Field(default="zh", min_length=2, max_length=3)
    urgency: Urgency = Urgency.ROUTINE
    chief_complaint: str = Field(default="", max_length=2000)
    clinical_notes: str = Field(default="", max_length=20000)
    question: str = Field(default="", max_length=4000)
    studies: list[str] = Field(default_factory=list, max_length=20)


class DraftPatchIn(_In):
    """Changes to a draft (PATCH /api/consultations/{id}); omitted fields stay."""

    specialty: str | None = Field(default=None, max_length=40)
    icd10_codes: list[str] | None = Field(default=None, max_length=10)
    language: str | None = Field(default=None, min_length=2, max_length=3)
    urgency: Urgency | None = None
    chief_complaint: str | None = Field(default=None, max_length=2000)
    clinical_notes: str | None = Field(default=None, max_length=20000)
    question: str | None = Field(default=None, max_length=4000)


class AttachIn(_In):
    study_instance_uid: str = Field(min_length=1, max_length=64, pattern=_UID)


class ReasonIn(_In):
    reason: str = Field(default="", max_length=1000)


class OfferIn(_In):
    expert_id: uuid.UUID


class CloseIn(_In):
    rating: int | None = Field(default=None, ge=1, le=5, description="outcome rating 1..5, feeds matching")


class DiagnosisIn(_In):
    code: str = Field(min_length=3, max_length=8)
    primary: bool = False


class PrescriptionIn(_In):
    drug: str = Field(min_length=1, max_length=200)
    dose: str = Field(min_length=1, max_length=16, description="decimal text, e.g. 500 or 0.25")
    unit: str = Field(min_length=1, max_length=16)
    route: str = Field(min_length=2, max_length=8)
    frequency: str = Field(min_length=2, max_length=8)
    duration_days: int
    notes: str = Field(default="", max_length=500)


class ReportIn(_In):
    """The expert's report (POST /api/consultations/{id}/report)."""

    findings: str = Field(max_length=10000)
    diagnoses: list[DiagnosisIn] = Field(max_length=10)
    recommendations: str = Field(default="", max_length=10000)
    prescriptions: list[PrescriptionIn] = Field(default_factory=list, max_length=20)
    follow_up_date: dt.date | None = None


class TriageIn(_In):
    text: str = Field(min_length=1, max_length=2000)
    language: str | None = Field(default=None, pattern="^(zh|en)$")


class EventOut(_Out):
    at: dt.datetime
    event: str
    from_state: str | None
    to_state: str | None
    actor_id: uuid.UUID | None
    actor_name: str | None
    actor_role: str
    detail: dict[str, Any]


class AttachmentOut(_Out):
    study_instance_uid: str
    added_at: dt.datetime
    modalities: list[str]
    instances_in_cloud: int


class OfferOut(_Out):
    offer_id: uuid.UUID
    expert_id: uuid.UUID
    expert_name: str
    rank: int | None
    score: float | None
    method: str
    explanation: dict[str, Any]
    offered_at: dt.datetime
    reminded_at: dt.datetime | None
    responded_at: dt.datetime | None
    outcome: str
    decline_reason: str | None


class DeadlinesOut(_Out):
    remind_at: dt.datetime | None
    respond_by: dt.datetime | None
    overall_by: dt.datetime | None


class ConsultationSummaryOut(_Out):
    consultation_id: uuid.UUID
    patient_id: str
    site_id: str
    state: str
    urgency: str
    specialty: str | None
    chief_complaint: str
    assigned_expert_id: uuid.UUID | None
    created_at: dt.datetime
    requested_at: dt.datetime | None
    updated_at: dt.datetime


class ConsultationListOut(_Out):
    consultations: list[ConsultationSummaryOut]


class ConsultationOut(ConsultationSummaryOut):
    """One consultation with its attachments (studies, vitals snapshot, NEWS2, text) and timeline."""

    requester_id: uuid.UUID
    icd10_codes: list[str]
    language: str
    clinical_notes: str
    question: str
    triage: dict[str, Any] | None
    vitals_snapshot: dict[str, Any] | None
    news2: dict[str, Any] | None
    rating: int | None
    accepted_at: dt.datetime | None
    session_started_at: dt.datetime | None
    report_submitted_at: dt.datetime | None
    closed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    escalated_at: dt.datetime | None
    breached_at: dt.datetime | None
    deadlines: DeadlinesOut
    actions: list[str]
    has_report: bool
    attachments: list[AttachmentOut]
    offers: list[OfferOut]
    timeline: list[EventOut]


class FactorOut(_Out):
    value: float
    weight: float
    contribution: float


class LearnedOut(_Out):
    probability: float
    intercept: float
    contributions: dict[str, float]


class CandidateOut(_Out):
    expert_id: uuid.UUID
    rank: int
    score: float
    factors: dict[str, FactorOut]
    learned: LearnedOut | None


class MatchesOut(_Out):
    method: str
    experts: int
    remaining: dict[str, int] = Field(description="experts left after each hard filter, in order")
    candidates: list[CandidateOut]


class ReportOut(_Out):
    consultation_id: uuid.UUID
    body: dict[str, Any]
    signature: str
    algorithm: str
    key_fingerprint: str
    public_key: str
    signed_at: dt.datetime


class VerifyOut(_Out):
    valid: bool
    reason: str
    key_fingerprint: str
    expert_id: uuid.UUID
    signed_at: dt.datetime


class Icd10Out(_Out):
    code: str
    name_en: str
    name_zh: str


class Icd10ListOut(_Out):
    results: list[Icd10Out]


class SpecialtyScoreOut(_Out):
    specialty: str
    score: float


class RedFlagOut(_Out):
    id: str
    urgency: str
    label: str


class TriageOut(_Out):
    language: str
    urgency: str
    specialties: list[SpecialtyScoreOut]
    red_flags: list[RedFlagOut]
    symptoms: list[str]
    negated: list[str]
    follow_up: list[str]
    onset_hours: float | None
    recognised: bool
