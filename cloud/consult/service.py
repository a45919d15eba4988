"""The consultation workflow against the database: drafts, submission with triage and a clinical snapshot,
offers to matched experts, answers, sessions, signed reports, closing and cancelling.

Every state change runs in one transaction that locks the consultation row, asks the transition table
(cloud.consult.workflow) for the next state, writes the row, a timeline event, the hash-chained audit entry
and a `telemed_consult` notification, so they commit together or not at all. A declined or expired offer is
offered to the next-ranked expert in the same transaction; with nobody left the consultation escalates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.api import queries
from cloud.api.audit import audit, record_transition
from cloud.api.auth.models import Role, User
from cloud.api.auth.scoping import site_scope
from cloud.api.auth.store import Conn
from cloud.api.errors import ForbiddenError, InvalidParameterError, NotFoundError
from cloud.consult import icd10, pdf, report, sla, store
from cloud.consult.access import capacities
from cloud.consult.errors import ConflictError, SigningUnavailableError
from cloud.consult.policy import ConsultPolicy
from cloud.consult.signing_keys import ReportKeys, SigningKeyError, public_key_from_text
from cloud.consult.snapshot import news2_at, news2_urgency, vitals_snapshot
from cloud.consult.workflow import (
    TRANSITIONS,
    Actor,
    ActorNotAllowedError,
    Event,
    State,
    UnknownTransitionError,
    available_events,
    next_state,
)
from cloud.matching.filters import MatchRequest
from cloud.matching.service import MatchingService, MatchResult, explanation
from cloud.triage.lexicon import Language, Urgency
from cloud.triage.triage import TriageResult, triage

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:consult"
REPORT_ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")  # "today" for follow-up dates is the hospitals' day
# States in which the requester may still attach studies (the expert has not reported yet).
_ATTACHABLE = frozenset({State.DRAFT, State.REQUESTED, State.OFFERED, State.ACCEPTED, State.IN_SESSION,
                         State.ESCALATED})


@dataclass(frozen=True, slots=True)
class DraftInput:
    """A new consultation as the requester writes it."""

    patient_id: str
    specialty: str | None = None
    icd10_codes: Sequence[str] = ()
    language: str = "zh"
    urgency: Urgency = Urgency.ROUTINE
    chief_complaint: str = ""
    clinical_notes: str = ""
    question: str = ""
    studies: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class DraftPatch:
    """Changes to a draft (None: unchanged)."""

    specialty: str | None = None
    icd10_codes: Sequence[str] | None = None
    language: str | None = None
    urgency: Urgency | None = None
    chief_complaint: str | None = None
    clinical_notes: str | None = None
    question: str | None = None


@dataclass(frozen=True, slots=True)
class ConsultationDetail:
    """One consultation as a caller may see it."""

    consultation: store.ConsultationRow
    timeline: list[store.EventRow]
    attachments: list[store.AttachmentRow]
    offers: list[store.OfferRow]
    deadlines: sla.Deadlines
    actions: list[Event]
    has_report: bool


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking a stored report against its signature."""

    valid: bool
    key_fingerprint: str
    expert_id: uuid.UUID
    signed_at: dt.datetime
    reason: str


def _clock_of(c: store.ConsultationRow, offer: store.OfferRow | None) -> sla.ConsultClock:
    return sla.ConsultClock(
        consultation_id=c.consultation_id, state=State(c.state), urgency=Urgency(c.urgency),
        requested_at=c.requested_at, breached=c.breached_at is not None,
        offer=sla.OfferClock(offer.offer_id, offer.offered_at, offer.reminded_at is not None) if offer else None,
    )


def _codes(values: Sequence[str], field: str) -> list[str]:
    result: list[str] = []
    for index, value in enumerate(values):
        try:
            code = icd10.lookup(value).code
        except icd10.UnknownCodeError:
            raise InvalidParameterError(f"{field}.{index}", f"{value!r} is not in the ICD-10 list",
                                        location="body") from None
        if code not in result:
            result.append(code)
    return result


def _language(value: str) -> str:
    text = value.strip().lower()
    if not (2 <= len(text) <= 3 and text.isascii() and text.isalpha()):
        raise InvalidParameterError("language", "an ISO 639 code such as zh or en", location="body")
    return text


def _triage_json(result: TriageResult) -> dict[str, Any]:
    return {
        "language": result.language.value, "urgency": result.urgency.value,
        "specialties": [{"specialty": s.specialty, "score": s.score} for s in result.specialties],
        "red_flags": [{"id": f.id, "urgency": f.urgency.value, "label": f.label} for f in result.red_flags],
        "symptoms": list(result.symptoms), "negated": list(result.negated),
        "follow_up": list(result.follow_up), "onset_hours": result.onset_hours, "recognised": result.recognised,
    }


def _check(c: store.ConsultationRow, event: Event, actors: frozenset[Actor]) -> State:
    """The state `event` leads `c` to; 409 when the state does not allow it, 403 when the caller may not."""
    try:
        return next_state(State(c.state), event, actors)
    except UnknownTransitionError as exc:
        raise ConflictError(str(exc)) from None
    except ActorNotAllowedError as exc:
        raise ForbiddenError(str(exc)) from None


class ConsultationService:
    """Consultation use cases; one per process (the API and the SLA scheduler share it)."""

    def __init__(self, *, matching: MatchingService, keys: ReportKeys, policy: ConsultPolicy) -> None:
        self.matching = matching
        self.keys = keys
        self.policy = policy

    # --- reading --------------------------------------------------------------------------------------

    async def _visible(self, conn: Conn, user: User, consultation_id: uuid.UUID) -> store.ConsultationRow:
        found = await store.visible_consultation(conn, user, consultation_id)
        if found is None:
            raise NotFoundError("consultation not found")
        return found

    async def _locked(self, conn: Conn, user: User | None, consultation_id: uuid.UUID) -> store.ConsultationRow:
        """The consultation locked for update; for a user, only if they may see it (404 otherwise)."""
        if user is not None:
            await self._visible(conn, user, consultation_id)
        found = await store.get_consultation(conn, consultation_id, lock=True)
        if found is None:
            raise NotFoundError("consultation not found")
        return found

    async def list_for(
        self, conn: Conn, *, user: User, states: Sequence[State] = (), patient_id: str | None = None,
        limit: int = 100, before: dt.datetime | None = None,
    ) -> list[store.ConsultationRow]:
        """The consultations the caller may see, newest first."""
        rows = await store.list_consultations(conn, user, states=[s.value for s in states], patient_id=patient_id,
                                              limit=limit, before=before)
        if rows:
            # One audit entry for the listing: it shows complaints, i.e. patient data.
            await audit(conn, "consultation.list", user, patient_id,
                        detail={"consultations": [str(r.consultation_id) for r in rows]})
        return rows

    async def detail(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, ip: str | None = None,
                     ) -> ConsultationDetail:
        """One consultation with its timeline, attachments, offers, SLA deadlines and the caller's actions."""
        c = await self._visible(conn, user, consultation_id)
        offers = await store.offers(conn, consultation_id)
        pending = next((o for o in offers if o.outcome == "pending"), None)
        actors = capacities(user, site_id=c.site_id, assigned_expert_id=c.assigned_expert_id,
                            pending_expert_id=pending.expert_id if pending else None)
        if actors == frozenset({Actor.EXPERT}):
            offers = [o for o in offers if o.expert_id == user.user_id]  # experts see their own offers only
        detail = ConsultationDetail(
            consultation=c, timeline=await store.events(conn, consultation_id),
            attachments=await store.attachments(conn, consultation_id), offers=offers,
            deadlines=sla.deadlines(_clock_of(c, pending), self.policy.sla),
            actions=available_events(State(c.state), actors),
            has_report=await store.get_report(conn, consultation_id) is not None,
        )
        await audit(conn, "consultation.read", user, c.patient_id, detail={"consultation_id": str(consultation_id)},
                    ip=ip)
        return detail

    async def preview_matches(self, conn: Conn, *, user: User, consultation_id: uuid.UUID) -> MatchResult:
        """The experts matching would offer this consultation to next, explained (requester and admins)."""
        c = await self._visible(conn, user, consultation_id)
        actors = capacities(user, site_id=c.site_id, assigned_expert_id=c.assigned_expert_id, pending_expert_id=None)
        if not actors & {Actor.REQUESTER, Actor.ADMIN}:
            raise ForbiddenError("only the requesting site and admins see the matching")
        if c.specialty is None:
            raise InvalidParameterError("specialty", "set a specialty to match experts", location="body")
        return await self.matching.match(conn, await self._match_request(conn, c), limit=self.policy.match_limit)

    # --- drafting -------------------------------------------------------------------------------------

    async def create_draft(self, conn: Conn, *, user: User, draft: DraftInput, now: dt.datetime,
                           ip: str | None = None) -> uuid.UUID:
        """A new draft for a patient of the caller's site; its id."""
        if Role.COUNTY_DOCTOR not in user.roles or user.site_id is None:
            raise ForbiddenError("only county doctors request consultations")
        patient = await queries.visible_patient(conn, draft.patient_id, site_scope(user))
        if patient is None or patient.site_id != user.site_id:
            raise NotFoundError("patient not found")
        fields = await self._checked_fields(conn, specialty=draft.specialty, icd10_codes=draft.icd10_codes,
                                            language=draft.language)
        async with conn.transaction():
            consultation_id = await store.insert_consultation(conn, {
                "patient_id": patient.patient_id, "site_id": patient.site_id, "requester_id": user.user_id,
                "state": State.DRAFT.value, "urgency": draft.urgency.value,
                "chief_complaint": draft.chief_complaint.strip(), "clinical_notes": draft.clinical_notes.strip(),
                "question": draft.question.strip(), "created_at": now, "updated_at": now, **fields,
            })
            await store.insert_event(conn, consultation_id=consultation_id, at=now, event="created", from_state=None,
                                     to_state=State.DRAFT.value, actor_id=user.user_id,
                                     actor_role=Actor.REQUESTER.value, detail={})
            await record_transition(conn, entity="consultation", entity_id=str(consultation_id), from_state=None,
                                    to_state=State.DRAFT.value, actor=user, detail={"event": "create"},
                                    patient_id=patient.patient_id, ip=ip)
            for uid in draft.studies:
                await self._attach(conn, user=user, consultation_id=consultation_id, patient_id=patient.patient_id,
                                   study_instance_uid=uid, now=now)
        return consultation_id

    async def _checked_fields(self, conn: Conn, *, specialty: str | None, icd10_codes: Sequence[str] | None,
                              language: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if specialty is not None:
            if not await store.specialty_exists(conn, specialty):
                raise InvalidParameterError("specialty", f"unknown specialty {specialty!r}", location="body")
            fields["specialty"] = specialty
        if icd10_codes is not None:
            fields["icd10_codes"] = _codes(icd10_codes, "icd10_codes")
        if language is not None:
            fields["language"] = _language(language)
        return fields

    async def update_draft(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, patch: DraftPatch,
                           now: dt.datetime) -> None:
        """Edit a draft (requester only, while it is a draft)."""
        fields = await self._checked_fields(conn, specialty=patch.specialty, icd10_codes=patch.icd10_codes,
                                            language=patch.language)
        for name in ("chief_complaint", "clinical_notes", "question"):
            value = getattr(patch, name)
            if value is not None:
                fields[name] = value.strip()
        if patch.urgency is not None:
            fields["urgency"] = patch.urgency.value
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            self._require(user, c, Actor.REQUESTER)
            if c.state != State.DRAFT:
                raise ConflictError(f"only a draft can be edited; this consultation is {c.state}")
            if fields:
                await store.update_consultation(conn, consultation_id, {**fields, "updated_at": now})
                await store.insert_event(conn, consultation_id=consultation_id, at=now, event="edited",
                                         from_state=c.state, to_state=c.state, actor_id=user.user_id,
                                         actor_role=Actor.REQUESTER.value, detail={"fields": sorted(fields)})

    def _require(self, user: User, c: store.ConsultationRow, actor: Actor,
                 pending_expert_id: uuid.UUID | None = None) -> None:
        held = capacities(user, site_id=c.site_id, assigned_expert_id=c.assigned_expert_id,
                          pending_expert_id=pending_expert_id)
        if actor not in held:
            raise ForbiddenError(f"only the {actor.value} may do this")

    async def _attach(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, patient_id: str,
                      study_instance_uid: str, now: dt.datetime) -> bool:
        known, patients = await store.study_patient(conn, study_instance_uid)
        if not known or patient_id not in patients:
            # Unknown and other patients' studies look the same: nothing about them leaks.
            raise InvalidParameterError("study_instance_uid", "no such study for this patient", location="body")
        added = await store.add_attachment(conn, consultation_id, study_instance_uid, at=now, by=user.user_id)
        if added:
            await store.insert_event(conn, consultation_id=consultation_id, at=now, event="study_attached",
                                     from_state=None, to_state=None, actor_id=user.user_id,
                                     actor_role=Actor.REQUESTER.value,
                                     detail={"study_instance_uid": study_instance_uid})
        return added

    async def attach_study(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, study_instance_uid: str,
                           now: dt.datetime) -> bool:
        """Attach a DICOM study of the patient (until the report is in); False if it was attached already."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            self._require(user, c, Actor.REQUESTER)
            if State(c.state) not in _ATTACHABLE:
                raise ConflictError(f"studies cannot be attached to a consultation that is {c.state}")
            return await self._attach(conn, user=user, consultation_id=consultation_id, patient_id=c.patient_id,
                                      study_instance_uid=study_instance_uid, now=now)

    async def detach_study(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, study_instance_uid: str,
                           now: dt.datetime) -> None:
        """Remove an attached study from a draft."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            self._require(user, c, Actor.REQUESTER)
            if c.state != State.DRAFT:
                raise ConflictError("studies can only be removed from a draft")
            if not await store.remove_attachment(conn, consultation_id, study_instance_uid):
                raise NotFoundError("study not attached")
            await store.insert_event(conn, consultation_id=consultation_id, at=now, event="study_detached",
                                     from_state=None, to_state=None, actor_id=user.user_id,
                                     actor_role=Actor.REQUESTER.value,
                                     detail={"study_instance_uid": study_instance_uid})

    # --- transitions ----------------------------------------------------------------------------------

    async def _transition(
        self, conn: Conn, c: store.ConsultationRow, event: Event, *, user: User | None, actors: frozenset[Actor],
        now: dt.datetime, fields: Mapping[str, Any] | None = None, detail: Mapping[str, Any] | None = None,
        notify_expert: uuid.UUID | None = None, ip: str | None = None,
    ) -> store.ConsultationRow:
        """Fire `event` on locked `c`: state, columns, timeline, audit and notification in the caller's transaction."""
        source = State(c.state)
        target = _check(c, event, actors)
        allowed = TRANSITIONS[(event, source)].actors
        acting = next(a for a in (Actor.EXPERT, Actor.REQUESTER, Actor.ADMIN, Actor.SYSTEM)
                      if a in actors and a in allowed)
        changes = {"state": target.value, "updated_at": now, **dict(fields or {})}
        await store.update_consultation(conn, c.consultation_id, changes)
        body = dict(detail or {})
        await store.insert_event(conn, consultation_id=c.consultation_id, at=now, event=event.value,
                                 from_state=source.value, to_state=target.value,
                                 actor_id=user.user_id if user else None, actor_role=acting.value, detail=body)
        await record_transition(conn, entity="consultation", entity_id=str(c.consultation_id),
                                from_state=source.value, to_state=target.value, actor=user or SYSTEM_ACTOR,
                                detail={"event": event.value, "as": acting.value, **body}, patient_id=c.patient_id,
                                ip=ip)
        await store.notify(conn, json.dumps({
            "consultation_id": str(c.consultation_id), "site_id": c.site_id, "event": event.value,
            "state": target.value, "urgency": str(changes.get("urgency", c.urgency)),
            "expert_id": str(notify_expert) if notify_expert else None,
        }))
        log.info("consult.transition consultation=%s event=%s from=%s to=%s as=%s", c.consultation_id,
                 event.value, source.value, target.value, acting.value)
        return dataclasses.replace(c, **changes)

    async def submit(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, now: dt.datetime,
                     ip: str | None = None) -> State:
        """Request the consultation: triage, vitals and NEWS2 snapshot, final urgency, then the first offer."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            _check(c, Event.SUBMIT, capacities(user, site_id=c.site_id, assigned_expert_id=None,
                                               pending_expert_id=None))
            if c.specialty is None:
                raise InvalidParameterError("specialty", "required to submit", location="body")
            if not c.chief_complaint:
                raise InvalidParameterError("chief_complaint", "required to submit", location="body")
            language = Language.ZH if c.language == "zh" else Language.EN
            triaged = triage(c.chief_complaint, language)
            vitals = await vitals_snapshot(conn, c.patient_id, now=now)
            news2 = await news2_at(conn, c.patient_id, now=now)
            # Urgency never goes below what the complaint's red flags or the NEWS2 call for.
            urgency = max(Urgency(c.urgency), triaged.urgency, news2_urgency(news2), key=lambda u: u.rank)
            c = await self._transition(conn, c, Event.SUBMIT, user=user, actors=frozenset({Actor.REQUESTER}),
                                       now=now, ip=ip, fields={
                                           "requested_at": now, "urgency": urgency.value,
                                           "triage": _triage_json(triaged), "vitals_snapshot": vitals,
                                           "news2": news2,
                                       }, detail={"urgency": urgency.value})
            c = await self._offer_next(conn, c, now=now)
        return State(c.state)

    async def _match_request(self, conn: Conn, c: store.ConsultationRow) -> MatchRequest:
        assert c.specialty is not None
        _, region = await store.site_info(conn, c.site_id)
        exclude = await store.offered_experts(conn, c.consultation_id)
        return MatchRequest(
            specialty=c.specialty, icd10_codes=tuple(c.icd10_codes),
            regions=None if region is None or self.policy.cross_region else frozenset({region}),
            language=c.language, exclude=frozenset(exclude | {c.requester_id}),
        )

    async def _offer_next(self, conn: Conn, c: store.ConsultationRow, *, now: dt.datetime) -> store.ConsultationRow:
        """Offer `c` (now `requested`) to the best expert not yet asked; escalate when there is none."""
        result = await self.matching.match(conn, await self._match_request(conn, c), limit=1)
        if not result.candidates:
            return await self._transition(conn, c, Event.ESCALATE, user=None, actors=frozenset({Actor.SYSTEM}),
                                          now=now, fields={"escalated_at": now},
                                          detail={"remaining": dict(result.remaining)})
        best = result.candidates[0]
        match = best.match
        offer_id = await store.insert_offer(
            conn, consultation_id=c.consultation_id, expert_id=match.expert_id, rank=match.rank, score=match.score,
            method=result.method, factors=match.factors, explanation=explanation(best, self.matching.weights),
            offered_at=now,
        )
        return await self._transition(conn, c, Event.OFFER, user=None, actors=frozenset({Actor.SYSTEM}), now=now,
                                      notify_expert=match.expert_id, detail={
                                          "offer_id": str(offer_id), "expert_id": str(match.expert_id),
                                          "score": match.score, "method": result.method,
                                      })

    async def _pending_for(self, conn: Conn, user: User, c: store.ConsultationRow) -> store.OfferRow:
        offer = await store.pending_offer(conn, c.consultation_id)
        if c.state != State.OFFERED or offer is None:
            raise ConflictError(f"there is no pending offer; the consultation is {c.state}")
        if offer.expert_id != user.user_id:
            raise ForbiddenError("the offer is not yours")
        return offer

    async def accept(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, now: dt.datetime,
                     ip: str | None = None) -> State:
        """The offered expert takes the consultation (within their declared capacity)."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            offer = await self._pending_for(conn, user, c)
            limit = await store.max_concurrent(conn, user.user_id)
            if limit is not None and await store.held_count(conn, user.user_id) >= limit:
                raise ConflictError(f"you already hold {limit} consultations (your maximum)")
            await store.close_offer(conn, offer.offer_id, outcome="accepted", at=now)
            c = await self._transition(conn, c, Event.ACCEPT, user=user, actors=frozenset({Actor.EXPERT}), now=now,
                                       ip=ip, fields={"assigned_expert_id": user.user_id, "accepted_at": now},
                                       detail={"offer_id": str(offer.offer_id)})
        return State(c.state)

    async def decline(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, reason: str, now: dt.datetime,
                      ip: str | None = None) -> State:
        """The offered expert declines; the consultation goes to the next match."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            offer = await self._pending_for(conn, user, c)
            text = reason.strip()[:1000]
            await store.close_offer(conn, offer.offer_id, outcome="declined", at=now, reason=text or None)
            c = await self._transition(conn, c, Event.DECLINE, user=user, actors=frozenset({Actor.EXPERT}), now=now,
                                       ip=ip, detail={"offer_id": str(offer.offer_id), "reason": text})
            c = await self._offer_next(conn, c, now=now)
        return State(c.state)

    async def admin_offer(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, expert_id: uuid.UUID,
                          now: dt.datetime, ip: str | None = None) -> State:
        """An admin offers an escalated consultation to an expert of their choice."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            self._require(user, c, Actor.ADMIN)
            expert = await store.expert_user(conn, expert_id)
            if expert is None or not expert[1]:
                raise InvalidParameterError("expert_id", "not an active expert", location="body")
            if c.state != State.ESCALATED:
                raise ConflictError(f"cannot offer a consultation that is {c.state}")
            offer_id = await store.insert_offer(conn, consultation_id=c.consultation_id, expert_id=expert_id,
                                                rank=None, score=None, method="admin", factors={}, explanation={},
                                                offered_at=now)
            c = await self._transition(conn, c, Event.OFFER, user=user, actors=frozenset({Actor.ADMIN}), now=now,
                                       ip=ip, notify_expert=expert_id,
                                       detail={"offer_id": str(offer_id), "expert_id": str(expert_id),
                                               "method": "admin"})
        return State(c.state)

    async def start_session(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, now: dt.datetime,
                            ip: str | None = None) -> State:
        """The assigned expert or the requesting site opens the consultation session."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            actors = capacities(user, site_id=c.site_id, assigned_expert_id=c.assigned_expert_id,
                                pending_expert_id=None)
            c = await self._transition(conn, c, Event.START_SESSION, user=user, actors=actors, now=now, ip=ip,
                                       fields={"session_started_at": now})
        return State(c.state)

    async def submit_report(self, conn: Conn, *, user: User, consultation_id: uuid.UUID,
                            content: report.ReportInput, now: dt.datetime, ip: str | None = None) -> report.Signed:
        """The assigned expert submits the report, signed with their key."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            actors = capacities(user, site_id=c.site_id, assigned_expert_id=c.assigned_expert_id,
                                pending_expert_id=None)
            if State(c.state) is not State.IN_SESSION:
                raise ConflictError(f"cannot submit a report for a consultation that is {c.state}")
            if Actor.EXPERT not in actors:
                raise ForbiddenError("only the assigned expert reports")
            try:
                body = report.build_body(
                    content, consultation_id=c.consultation_id, patient_id=c.patient_id, expert_id=user.user_id,
                    expert_name=user.display_name or user.username, signed_at=now,
                    today=now.astimezone(REPORT_ZONE).date(),
                )
            except report.ReportError as exc:
                raise InvalidParameterError(exc.field, exc.message, location="body") from None
            try:
                key = await self.keys.signing_key(conn, user.user_id, now=now)
            except SigningKeyError as exc:
                log.error("consult.signing_key_unavailable expert=%s error=%s", user.user_id, exc)
                raise SigningUnavailableError("the report cannot be signed now; try again later") from None
            signed = report.sign(body, key.private_key)
            await store.insert_report(conn, consultation_id=c.consultation_id, expert_id=user.user_id, body=body,
                                      signature=signed.signature, key_fingerprint=signed.key_fingerprint,
                                      signed_at=now)
            await self._transition(conn, c, Event.SUBMIT_REPORT, user=user, actors=actors, now=now, ip=ip,
                                   fields={"report_submitted_at": now},
                                   detail={"key_fingerprint": signed.key_fingerprint,
                                           "diagnoses": [d["code"] for d in body["diagnoses"]]})
        return signed

    async def close(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, rating: int | None,
                    now: dt.datetime, ip: str | None = None) -> State:
        """The requesting site (or an admin) closes a reported consultation, optionally rating it 1..5."""
        if rating is not None and not 1 <= rating <= 5:
            raise InvalidParameterError("rating", "1..5", location="body")
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            actors = capacities(user, site_id=c.site_id, assigned_expert_id=c.assigned_expert_id,
                                pending_expert_id=None)
            c = await self._transition(conn, c, Event.CLOSE, user=user, actors=actors, now=now, ip=ip,
                                       fields={"closed_at": now, "rating": rating}, detail={"rating": rating})
        return State(c.state)

    async def cancel(self, conn: Conn, *, user: User, consultation_id: uuid.UUID, reason: str, now: dt.datetime,
                     ip: str | None = None) -> State:
        """The requesting site (or an admin) cancels before an expert accepted; a pending offer is withdrawn."""
        async with conn.transaction():
            c = await self._locked(conn, user, consultation_id)
            actors = capacities(user, site_id=c.site_id, assigned_expert_id=c.assigned_expert_id,
                                pending_expert_id=None)
            offer = await store.pending_offer(conn, consultation_id)
            text = reason.strip()[:1000]
            c = await self._transition(conn, c, Event.CANCEL, user=user, actors=actors, now=now, ip=ip,
                                       fields={"cancelled_at": now}, detail={"reason": text},
                                       notify_expert=offer.expert_id if offer else None)
            if offer is not None:
                await store.close_offer(conn, offer.offer_id, outcome="withdrawn", at=now)
        return State(c.state)

    # --- SLA timers (the scheduler) --------------------------------------------------------------------

    async def clocks(self, conn: Conn) -> list[sla.ConsultClock]:
        """Timer state of every running consultation."""
        return [
            sla.ConsultClock(
                consultation_id=r.consultation_id, state=State(r.state), urgency=Urgency(r.urgency),
                requested_at=r.requested_at, breached=r.breached_at is not None,
                offer=sla.OfferClock(r.offer_id, r.offered_at, r.reminded_at is not None)
                if r.offer_id is not None and r.offered_at is not None else None,
            )
            for r in await store.running_clocks(conn)
        ]

    async def apply(self, conn: Conn, action: sla.SlaAction, *, now: dt.datetime) -> bool:
        """Carry out one due SLA action; False when the consultation moved on meanwhile (nothing done)."""
        async with conn.transaction():
            c = await store.get_consultation(conn, action.consultation_id, lock=True)
            if c is None:
                return False
            offer = await store.pending_offer(conn, c.consultation_id)
            # Re-evaluate under the lock: an answer or another replica's tick may have got here first.
            if action not in sla.due_actions(_clock_of(c, offer), now=now, policy=self.policy.sla):
                return False
            if isinstance(action, sla.Remind):
                assert offer is not None
                if not await store.mark_reminded(conn, offer.offer_id, now):
                    return False
                await store.insert_event(conn, consultation_id=c.consultation_id, at=now, event="reminder",
                                         from_state=c.state, to_state=c.state, actor_id=None,
                                         actor_role=Actor.SYSTEM.value,
                                         detail={"offer_id": str(offer.offer_id), "expert_id": str(offer.expert_id)})
                await store.notify(conn, json.dumps({
                    "consultation_id": str(c.consultation_id), "site_id": c.site_id, "event": "reminder",
                    "state": c.state, "urgency": c.urgency, "expert_id": str(offer.expert_id),
                }))
                return True
            if isinstance(action, sla.Expire):
                assert offer is not None
                await store.close_offer(conn, offer.offer_id, outcome="expired", at=now)
                c = await self._transition(conn, c, Event.EXPIRE, user=None, actors=frozenset({Actor.SYSTEM}),
                                           now=now, detail={"offer_id": str(offer.offer_id),
                                                            "expert_id": str(offer.expert_id)})
                await self._offer_next(conn, c, now=now)
                return True
            await self._transition(conn, c, Event.BREACH, user=None, actors=frozenset({Actor.SYSTEM}), now=now,
                                   fields={"breached_at": now},
                                   detail={"overall_target_s": self.policy.sla.overall_s(Urgency(c.urgency))})
            return True

    # --- reports --------------------------------------------------------------------------------------

    async def _report(self, conn: Conn, user: User, consultation_id: uuid.UUID) -> tuple[store.ConsultationRow,
                                                                                          store.ReportRow]:
        c = await self._visible(conn, user, consultation_id)
        found = await store.get_report(conn, consultation_id)
        if found is None:
            raise NotFoundError("no report yet")
        return c, found

    async def report(self, conn: Conn, *, user: User, consultation_id: uuid.UUID,
                     ip: str | None = None) -> store.ReportRow:
        """The signed report as stored."""
        c, found = await self._report(conn, user, consultation_id)
        await audit(conn, "consultation.report.read", user, c.patient_id,
                    detail={"consultation_id": str(consultation_id)}, ip=ip)
        return found

    async def verify(self, conn: Conn, *, user: User, consultation_id: uuid.UUID) -> Verification:
        """Check the stored report against its signature and the signing expert's public key."""
        _, found = await self._report(conn, user, consultation_id)
        return self._verification(found)

    def _verification(self, found: store.ReportRow) -> Verification:
        try:
            valid = report.verify(found.body, found.signature, public_key_from_text(found.public_key))
            reason = "signature valid" if valid else "the report does not match its signature"
        except (report.SignatureError, SigningKeyError, ValueError) as exc:
            valid, reason = False, str(exc)
        if valid and found.body.get("consultation_id") != str(found.consultation_id):
            valid, reason = False, "the signed report belongs to another consultation"
        if valid and found.body.get("expert_id") != str(found.expert_id):
            valid, reason = False, "the signed report names another expert"
        return Verification(valid=valid, key_fingerprint=found.key_fingerprint, expert_id=found.expert_id,
                            signed_at=found.signed_at, reason=reason)

    async def report_pdf(self, conn: Conn, *, user: User, consultation_id: uuid.UUID,
                         ip: str | None = None) -> bytes:
        """The report as PDF; refused (409) when the stored report no longer verifies."""
        c, found = await self._report(conn, user, consultation_id)
        checked = self._verification(found)
        if not checked.valid:
            log.error("consult.report_tampered consultation=%s reason=%s", consultation_id, checked.reason)
            raise ConflictError(f"the stored report fails verification: {checked.reason}")
        site_name, _ = await store.site_info(conn, c.site_id)
        await audit(conn, "consultation.report.pdf", user, c.patient_id,
                    detail={"consultation_id": str(consultation_id)}, ip=ip)
        return pdf.render_report_pdf(found.body, signature=found.signature, fingerprint=found.key_fingerprint,
                                     site_name=site_name)

