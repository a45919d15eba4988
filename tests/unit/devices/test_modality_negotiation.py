"""Presentation contexts proposed for a study, the wire syntax chosen per instance, and status outcomes."""

from __future__ import annotations

import pytest
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from devices.modality.negotiation import (
    NATIVE_SYNTAXES,
    VERIFICATION_SOP_CLASS,
    ProposedContext,
    WirePlan,
    plan_wire_syntax,
    propose_contexts,
)
from devices.modality.report import InstanceResult, Outcome, SendReport, classify_status
from devices.modality.studies import CT_IMAGE_STORAGE, US_MULTIFRAME_IMAGE_STORAGE


def test_native_study_proposes_verification_and_one_native_context() -> None:
    contexts = propose_contexts([(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)] * 50)
    assert contexts == (
        ProposedContext(VERIFICATION_SOP_CLASS, NATIVE_SYNTAXES),
        ProposedContext(CT_IMAGE_STORAGE, NATIVE_SYNTAXES),
    )


def test_compressed_study_also_proposes_a_native_fallback_per_sop_class() -> None:
    contexts = propose_contexts([(CT_IMAGE_STORAGE, RLELossless), (US_MULTIFRAME_IMAGE_STORAGE, RLELossless),
                                 (CT_IMAGE_STORAGE, ExplicitVRLittleEndian)])
    assert ProposedContext(CT_IMAGE_STORAGE, (RLELossless,)) in contexts
    assert ProposedContext(US_MULTIFRAME_IMAGE_STORAGE, (RLELossless,)) in contexts
    assert ProposedContext(US_MULTIFRAME_IMAGE_STORAGE, NATIVE_SYNTAXES) in contexts
    assert len(contexts) == len(set(contexts)) == 5


def test_too_many_contexts_is_refused_before_connecting() -> None:
    pairs = [(UID(f"1.2.3.{n}"), RLELossless) for n in range(70)]
    with pytest.raises(ValueError, match="exceed"):
        propose_contexts(pairs)


ACCEPTED_RLE = {CT_IMAGE_STORAGE: frozenset({RLELossless, ExplicitVRLittleEndian})}
ACCEPTED_IMPLICIT = {CT_IMAGE_STORAGE: frozenset({ImplicitVRLittleEndian})}


@pytest.mark.parametrize(
    ("syntax", "accepted", "plan"),
    [
        (RLELossless, ACCEPTED_RLE, WirePlan(RLELossless, decode=False)),
        (RLELossless, ACCEPTED_IMPLICIT, WirePlan(ImplicitVRLittleEndian, decode=True)),
        (DeflatedExplicitVRLittleEndian, ACCEPTED_RLE, WirePlan(ExplicitVRLittleEndian, decode=False)),
        (ExplicitVRLittleEndian, ACCEPTED_IMPLICIT, WirePlan(ImplicitVRLittleEndian, decode=False)),
        (ExplicitVRLittleEndian, {}, None),
    ],
)
def test_wire_syntax_prefers_the_instance_own_then_native(
    syntax: UID, accepted: dict[UID, frozenset[UID]], plan: WirePlan | None
) -> None:
    assert plan_wire_syntax(CT_IMAGE_STORAGE, syntax, accepted) == plan


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(0x0000, Outcome.SUCCESS), (0x0001, Outcome.WARNING), (0xB000, Outcome.WARNING), (0xB007, Outcome.WARNING),
     (0xA700, Outcome.FAILURE), (0xA900, Outcome.FAILURE), (0xC000, Outcome.FAILURE), (0x0122, Outcome.FAILURE),
     (0x0211, Outcome.FAILURE), (0xFE00, Outcome.FAILURE)],
)
def test_store_statuses_are_classified_per_ps3_7(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def result(index: int, outcome: Outcome, size: int) -> InstanceResult:
    return InstanceResult(index, "1.2", f"1.2.{index}", "1.2.840.10008.1.2.1", outcome,
                          None if outcome is Outcome.NOT_SENT else 0, None, size, 0.01)


def test_report_totals_count_outcomes_and_throughput() -> None:
    report = SendReport("h", 1, "SCP", "SIM", 0, {}, (
        result(0, Outcome.SUCCESS, 100), result(1, Outcome.WARNING, 50), result(2, Outcome.NOT_SENT, 0),
        result(3, Outcome.SUCCESS, 100)), seconds=0.5, tcp_nodelay=True)
    assert (report.count(Outcome.SUCCESS), report.count(Outcome.WARNING), report.count(Outcome.NOT_SENT)) == (2, 1, 1)
    assert report.bytes_sent == 250
    assert report.instances_per_second == pytest.approx(6.0)
    assert not report.all_succeeded
    assert SendReport("h", 1, "A", "B", 0, {}, (result(0, Outcome.SUCCESS, 1),), 1.0, True).all_succeeded
    assert not SendReport("h", 1, "A", "B", 0, {}, (), 1.0, True).all_succeeded
