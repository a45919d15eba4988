"""Routes: consultations (drafts, workflow actions, matches, signed reports and their PDF), ICD-10 search
and pre-consultation triage. Thin: parse, authorise by role, call the service, shape the answer; the service
checks the site and the caller's capacity on the consultation itself."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from cloud.api.auth.models import Role, User
from cloud.api.deps import ClientIp, Db, require_roles
from cloud.consult import icd10, report, store
from cloud.consult.report import ALGORITHM
from cloud.consult.runtime import ConsultRuntime
from cloud.consult.schemas import (
    AttachIn,
    AttachmentOut,
    CandidateOut,
    CloseIn,
    ConsultationListOut,
    ConsultationOut,
    ConsultationSummaryOut,
    DeadlinesOut,
    DraftIn,
    DraftPatchIn,
    EventOut,
    FactorOut,
    Icd10ListOut,
    Icd10Out,
    LearnedOut,
    MatchesOut,
    OfferIn,
    OfferOut,
    ReasonIn,
    RedFlagOut,
    ReportIn,
    ReportOut,
    SpecialtyScoreOut,
    TriageIn,
    TriageOut,
    VerifyOut,
)
from cloud.consult.service import ConsultationDetail, ConsultationService, DraftInput, DraftPatch
from cloud.consult.workflow import State
from cloud.matching.scoring import FACTORS
from cloud.matching.service import MatchResult
from cloud.triage.lexicon import Language
from cloud.triage.triage import triage

router = APIRouter(prefix="/api/consultations", tags=["consultations"])
reference_router = APIRouter(prefix="/api", tags=["consultations"])

# Who may use which group of routes (the service then checks the consultation's site and offer/assignment).
CONSULT_READERS = (Role.ADMIN, Role.COUNTY_DOCTOR, Role.EXPERT)
REQUESTERS = (Role.COUNTY_DOCTOR,)
REQUESTERS_AND_ADMINS = (Role.COUNTY_DOCTOR, Role.ADMIN)
SESSION_PARTIES = (Role.COUNTY_DOCTOR, Role.EXPERT)
TRIAGE_USERS = (Role.ADMIN, Role.COUNTY_DOCTOR, Role.EXPERT)
ICD10_USERS = (Role.ADMIN, Role.COUNTY_DOCTOR, Role.EXPERT, Role.ON_CALL)

Reader = Annotated[User, Depends(require_roles(*CONSULT_READERS))]
Requester = Annotated[User, Depends(require_roles(*REQUESTERS))]
RequesterOrAdmin = Annotated[User, Depends(require_roles(*REQUESTERS_AND_ADMINS))]
Expert = Annotated[User, Depends(require_roles(Role.EXPERT))]
Admin = Annotated[User, Depends(require_roles(Role.ADMIN))]
SessionParty = Annotated[User, Depends(require_roles(*SESSION_PARTIES))]
ConsultationId = Annotated[uuid.UUID, Path()]


def _runtime(request: Request) -> ConsultRuntime:
    runtime: ConsultRuntime = request.app.state.consult
    return runtime


def consult_service(request: Request) -> ConsultationService:
    """The process's consultation service (created in the app lifespan)."""
    return _runtime(request).service


def consult_now(request: Request) -> dt.datetime:
    """Now, by the consultation clock (a test may drive it)."""
    return _runtime(request).clock()


Service = Annotated[ConsultationService, Depends(consult_service)]
Now = Annotated[dt.datetime, Depends(consult_now)]


def summary_out(c: store.ConsultationRow) -> ConsultationSummaryOut:
    return ConsultationSummaryOut(
        consultation_id=c.consultation_id, patient_id=c.patient_id, site_id=c.site_id, state=c.state,
        urgency=c.urgency, specialty=c.specialty, chief_complaint=c.chief_complaint,
        assigned_expert_id=c.assigned_expert_id, created_at=c.created_at, requested_at=c.requested_at,
        updated_at=c.updated_at,
    )


def detail_out(d: ConsultationDetail) -> ConsultationOut:
    c = d.consultation
    return ConsultationOut(
        **summary_out(c).model_dump(),
        requester_id=c.requester_id, icd10_codes=list(c.icd10_codes), language=c.language,
        clinical_notes=c.clinical_notes, question=c.question, triage=c.triage, vitals_snapshot=c.vitals_snapshot,
        news2=c.news2, rating=c.rating, accepted_at=c.accepted_at, session_started_at=c.session_started_at,
        report_submitted_at=c.report_submitted_at, closed_at=c.closed_at, cancelled_at=c.cancelled_at,
        escalated_at=c.escalated_at, breached_at=c.breached_at,
        deadlines=DeadlinesOut(remind_at=d.deadlines.remind_at, respond_by=d.deadlines.respond_by,
                               overall_by=d.deadlines.overall_by),
        actions=[e.value for e in d.actions], has_report=d.has_report,
        attachments=[AttachmentOut(study_instance_uid=a.study_instance_uid, added_at=a.added_at,
                                   modalities=sorted(a.modalities or []), instances_in_cloud=a.instances)
                     for a in d.attachments],
        offers=[OfferOut(offer_id=o.offer_id, expert_id=o.expert_id, expert_name=o.expert_name, rank=o.rank,
                         score=o.score, method=o.method, explanation=o.explanation, offered_at=o.offered_at,
                         reminded_at=o.reminded_at, responded_at=o.responded_at, outcome=o.outcome,
                         decline_reason=o.decline_reason) for o in d.offers],
        timeline=[EventOut(at=e.at, event=e.event, from_state=e.from_state, to_state=e.to_state, actor_id=e.actor_id,
                           actor_name=e.actor_name, actor_role=e.actor_role, detail=e.detail) for e in d.timeline],
    )


def matches_out(result: MatchResult, service: ConsultationService) -> MatchesOut:
    weights = service.matching.weights
    return MatchesOut(
        method=result.method, experts=result.experts, remaining=dict(result.remaining),
        candidates=[
            CandidateOut(
                expert_id=c.match.expert_id, rank=c.match.rank, score=c.match.score,
                factors={f: FactorOut(value=c.match.factors[f], weight=getattr(weights, f),
                                      contribution=c.match.contributions[f]) for f in FACTORS},
                learned=LearnedOut(probability=c.learned.probability, intercept=c.learned.intercept,
                                   contributions=dict(c.learned.contributions)) if c.learned else None,
            )
            for c in result.candidates
        ],
    )


async def _detail(service: ConsultationService, conn: Db, user: User, consultation_id: uuid.UUID,
                  ip: str) -> ConsultationOut:
    return detail_out(await service.detail(conn, user=user, consultation_id=consultation_id, ip=ip))


@router.post("", response_model=ConsultationOut, status_code=status.HTTP_201_CREATED)
async def create(body: DraftIn, user: Requester, service: Service, conn: Db, now: Now, ip: ClientIp,
                 ) -> ConsultationOut:
    """A new draft for a patient of the caller's site (attach studies by Study Instance UID)."""
    consultation_id = await service.create_draft(conn, user=user, now=now, ip=ip, draft=DraftInput(
        patient_id=body.patient_id, specialty=body.specialty, icd10_codes=body.icd10_codes, language=body.language,
        urgency=body.urgency, chief_complaint=body.chief_complaint, clinical_notes=body.clinical_notes,
        question=body.question, studies=body.studies,
    ))
    return await _detail(service, conn, user, consultation_id, ip)


@router.get("", response_model=ConsultationListOut)
async def list_consultations(
    user: Reader, service: Service, conn: Db,
    state: Annotated[list[State] | None, Query()] = None,
    patient_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[dt.datetime | None, Query(description="created before (paging)")] = None,
) -> ConsultationListOut:
    """Consultations the caller may see: a county doctor's site's, an expert's offered or assigned, all for admins."""
    rows = await service.list_for(conn, user=user, states=state or (), patient_id=patient_id, limit=limit,
                                  before=before)
    return ConsultationListOut(consultations=[summary_out(r) for r in rows])


@router.get("/{consultation_id}", response_model=ConsultationOut)
async def get(consultation_id: ConsultationId, user: Reader, service: Service, conn: Db, ip: ClientIp,
              ) -> ConsultationOut:
    """One consultation with attachments, snapshot, offers, SLA deadlines, the caller's actions and the timeline."""
    return await _detail(service, conn, user, consultation_id, ip)


@router.patch("/{consultation_id}", response_model=ConsultationOut)
async def update(consultation_id: ConsultationId, body: DraftPatchIn, user: Requester, service: Service, conn: Db,
                 now: Now, ip: ClientIp) -> ConsultationOut:
    """Edit a draft."""
    await service.update_draft(conn, user=user, consultation_id=consultation_id, now=now, patch=DraftPatch(
        specialty=body.specialty, icd10_codes=body.icd10_codes, language=body.language, urgency=body.urgency,
        chief_complaint=body.chief_complaint, clinical_notes=body.clinical_notes, question=body.question,
    ))
    return await _detail(service, conn, user, consultation_id, ip)


@router.post("/{consultation_id}/attachments", response_model=ConsultationOut)
async def attach(consultation_id: ConsultationId, body: AttachIn, user: Requester, service: Service, conn: Db,
                 now: Now, ip: ClientIp) -> ConsultationOut:
    """Attach a DICOM study of the patient (by Study Instance UID) until the report is in."""
    await service.attach_study(conn, user=user, consultation_id=consultation_id,
                               study_instance_uid=body.study_instance_uid, now=now)
    return await _detail(service, conn, user, consultation_id, ip)


@router.delete("/{consultation_id}/attachments/{study_instance_uid}", status_code=status.HTTP_204_NO_CONTENT)
async def detach(consultation_id: ConsultationId, study_instance_uid: Annotated[str, Path(max_length=64)],
                 user: Requester, service: Service, conn: Db, now: Now) -> Response:
    """Remove a study from a draft."""
    await service.detach_study(conn, user=user, consultation_id=consultation_id,
                               study_instance_uid=study_instance_uid, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{consultation_id}/submit", response_model=ConsultationOut)
async def submit(consultation_id: ConsultationId, user: Requester, service: Service, conn: Db, now: Now,
                 ip: ClientIp) -> ConsultationOut:
    """Request it: triage, vitals and NEWS2 snapshot, urgency, then the offer to the best-matching expert."""
    await service.submit(conn, user=user, consultation_id=consultation_id, now=now, ip=ip)
    return await _detail(service, conn, user, consultation_id, ip)


@router.get("/{consultation_id}/matches", response_model=MatchesOut)
async def matches(consultation_id: ConsultationId, user: RequesterOrAdmin, service: Service, conn: Db,
                  ) -> MatchesOut:
    """The experts matching would offer it to next, with each factor's contribution to their score."""
    return matches_out(await service.preview_matches(conn, user=user, consultation_id=consultation_id), service)


@router.post("/{consultation_id}/accept", response_model=ConsultationOut)
async def accept(consultation_id: ConsultationId, user: Expert, service: Service, conn: Db, now: Now,
                 ip: ClientIp) -> ConsultationOut:
    """The offered expert accepts."""
    await service.accept(conn, user=user, consultation_id=consultation_id, now=now, ip=ip)
    return await _detail(service, conn, user, consultation_id, ip)


@router.post("/{consultation_id}/decline", status_code=status.HTTP_204_NO_CONTENT)
async def decline(consultation_id: ConsultationId, body: ReasonIn, user: Expert, service: Service, conn: Db,
                  now: Now, ip: ClientIp) -> Response:
    """The offered expert declines; it goes to the next match (and out of the expert's sight)."""
    await service.decline(conn, user=user, consultation_id=consultation_id, reason=body.reason, now=now, ip=ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{consultation_id}/offer", response_model=ConsultationOut)
async def offer(consultation_id: ConsultationId, body: OfferIn, user: Admin, service: Service, conn: Db, now: Now,
                ip: ClientIp) -> ConsultationOut:
    """An admin offers an escalated consultation to an expert."""
    await service.admin_offer(conn, user=user, consultation_id=consultation_id, expert_id=body.expert_id, now=now,
                              ip=ip)
    return await _detail(service, conn, user, consultation_id, ip)


@router.post("/{consultation_id}/session", response_model=ConsultationOut)
async def start_session(consultation_id: ConsultationId, user: SessionParty, service: Service, conn: Db, now: Now,
                        ip: ClientIp) -> ConsultationOut:
    """Open the consultation session (the assigned expert or the requesting site)."""
    await service.start_session(conn, user=user, consultation_id=consultation_id, now=now, ip=ip)
    return await _detail(service, conn, user, consultation_id, ip)


def report_out(row: store.ReportRow) -> ReportOut:
    return ReportOut(consultation_id=row.consultation_id, body=row.body, signature=row.signature,
                     algorithm=ALGORITHM, key_fingerprint=row.key_fingerprint, public_key=row.public_key,
                     signed_at=row.signed_at)


@router.post("/{consultation_id}/report", response_model=ReportOut, status_code=status.HTTP_201_CREATED)
async def submit_report(consultation_id: ConsultationId, body: ReportIn, user: Expert, service: Service, conn: Db,
                        now: Now, ip: ClientIp) -> ReportOut:
    """The assigned expert's report, validated and signed with their Ed25519 key."""
    content = report.ReportInput(
        findings=body.findings, recommendations=body.recommendations, follow_up_date=body.follow_up_date,
        diagnoses=[report.DiagnosisInput(code=d.code, primary=d.primary) for d in body.diagnoses],
        prescriptions=[report.PrescriptionInput(drug=p.drug, dose=p.dose, unit=p.unit, route=p.route,
                                                frequency=p.frequency, duration_days=p.duration_days, notes=p.notes)
                       for p in body.prescriptions],
    )
    await service.submit_report(conn, user=user, consultation_id=consultation_id, content=content, now=now, ip=ip)
    return report_out(await service.report(conn, user=user, consultation_id=consultation_id, ip=ip))


@router.get("/{consultation_id}/report", response_model=ReportOut)
async def get_report(consultation_id: ConsultationId, user: Reader, service: Service, conn: Db, ip: ClientIp,
                     ) -> ReportOut:
    """The signed report: the body exactly as signed, the signature and the signing key."""
    return report_out(await service.report(conn, user=user, consultation_id=consultation_id, ip=ip))


@router.get("/{consultation_id}/report/verify", response_model=VerifyOut)
async def verify_report(consultation_id: ConsultationId, user: Reader, service: Service, conn: Db) -> VerifyOut:
    """Whether the stored report still matches its signature."""
    result = await service.verify(conn, user=user, consultation_id=consultation_id)
    return VerifyOut(valid=result.valid, reason=result.reason, key_fingerprint=result.key_fingerprint,
                     expert_id=result.expert_id, signed_at=result.signed_at)


@router.get("/{consultation_id}/report.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
async def report_pdf(consultation_id: ConsultationId, user: Reader, service: Service, conn: Db,
                     ip: ClientIp) -> Response:
    """The signed report as PDF, with the signature fingerprint (409 if the stored report fails verification)."""
    data = await service.report_pdf(conn, user=user, consultation_id=consultation_id, ip=ip)
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="consultation-{consultation_id}.pdf"',
    })


@router.post("/{consultation_id}/close", response_model=ConsultationOut)
async def close(consultation_id: ConsultationId, body: CloseIn, user: RequesterOrAdmin, service: Service, conn: Db,
                now: Now, ip: ClientIp) -> ConsultationOut:
    """Close a reported consultation, optionally rating the outcome (1..5)."""
    await service.close(conn, user=user, consultation_id=consultation_id, rating=body.rating, now=now, ip=ip)
    return await _detail(service, conn, user, consultation_id, ip)


@router.post("/{consultation_id}/cancel", response_model=ConsultationOut)
async def cancel(consultation_id: ConsultationId, body: ReasonIn, user: RequesterOrAdmin, service: Service,
                 conn: Db, now: Now, ip: ClientIp) -> ConsultationOut:
    """Cancel before an expert accepted (a pending offer is withdrawn)."""
    await service.cancel(conn, user=user, consultation_id=consultation_id, reason=body.reason, now=now, ip=ip)
    return await _detail(service, conn, user, consultation_id, ip)


@reference_router.get("/icd10", response_model=Icd10ListOut)
async def icd10_search(
    _: Annotated[User, Depends(require_roles(*ICD10_USERS))],
    q: Annotated[str, Query(min_length=1, max_length=100, description="code prefix, English words or Chinese")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Icd10ListOut:
    """Search the bundled ICD-10 list (zh and en names)."""
    return Icd10ListOut(results=[Icd10Out(code=e.code, name_en=e.en, name_zh=e.zh)
                                 for e in icd10.search(q, limit=limit)])


@reference_router.post("/triage", response_model=TriageOut)
async def triage_complaint(body: TriageIn, _: Annotated[User, Depends(require_roles(*TRIAGE_USERS))]) -> TriageOut:
    """Suggested specialties, urgency with red flags, and follow-up questions for a chief complaint."""
    result = triage(body.text, Language(body.language) if body.language else None)
    return TriageOut(
        language=result.language.value, urgency=result.urgency.value,
        specialties=[SpecialtyScoreOut(specialty=s.specialty, score=s.score) for s in result.specialties],
        red_flags=[RedFlagOut(id=f.id, urgency=f.urgency.value, label=f.label) for f in result.red_flags],
        symptoms=list(result.symptoms), negated=list(result.negated), follow_up=list(result.follow_up),
        onset_hours=result.onset_hours, recognised=result.recognised,
    )
