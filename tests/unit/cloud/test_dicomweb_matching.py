"""QIDO-RS parameters and PS3.4 C.2.2.2 matching over DICOM JSON (cloud/dicomweb/matching.py)."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.dicomweb.matching import QueryError, parse_search, resolve_attribute, select

STUDY: dict[str, Any] = {
    "00080020": {"vr": "DA", "Value": ["20240510"]},
    "00080030": {"vr": "TM", "Value": ["103015.5"]},
    "00080061": {"vr": "CS", "Value": ["CT", "SR"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^Wei", "Ideographic": "王^伟"}]},
    "00100020": {"vr": "LO", "Value": ["P-001"]},
    "0020000D": {"vr": "UI", "Value": ["1.2.3.4"]},
    "00081030": {"vr": "LO", "Value": ["胸部CT平扫"]},
}


def matches(query: str) -> bool:
    params = [tuple(p.split("=", 1)) for p in query.split("&")] if query else []
    return parse_search(params).matches(STUDY)  # type: ignore[arg-type]


@pytest.mark.parametrize(("query", "expected"), [
    ("", True),
    ("PatientID=P-001", True), ("PatientID=P-002", False), ("PatientID=", True), ("PatientID=*", True),
    ("PatientID=P-0*", True), ("PatientID=P-00?", True), ("PatientID=P-0?", False),
    ("StudyDate=20240510", True), ("StudyDate=20240101-20240531", True), ("StudyDate=20240511-", False),
    ("StudyDate=-20240510", True), ("StudyDate=20240601-20240630", False),
    ("StudyTime=1030-1031", True), ("StudyTime=1031-", False), ("StudyTime=-10", True), ("StudyTime=-09", False),
    ("ModalitiesInStudy=SR", True), ("ModalitiesInStudy=MR", False),
    ("StudyInstanceUID=9.9\\1.2.3.4", True), ("StudyInstanceUID=1.2.3", False),
    ("PatientName=Wang^Wei", True), ("PatientName=wang*", False), ("PatientName=wang*&fuzzymatching=true", True),
    ("PatientName=王*", True), ("StudyDescription=*CT*", True),
    ("00100020=P-001", True), ("AccessionNumber=A1", False),
    ("PatientID=P-001&StudyDate=20240101-20240131", False),
])
def test_matching(query: str, expected: bool) -> None:
    assert matches(query) is expected


@pytest.mark.parametrize(("query", "parameter"), [
    ("Bogus=1", "Bogus"), ("limit=0", "limit"), ("limit=1001", "limit"), ("offset=-1", "offset"),
    ("fuzzymatching=yes", "fuzzymatching"), ("includefield=Nope", "Nope"), ("ReferencedStudySequence=x",
                                                                              "ReferencedStudySequence"),
    ("PatientID=a&00100020=b", "00100020"), ("0010002X=1", "0010002X"),
])
def test_bad_parameters_name_themselves(query: str, parameter: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_search([tuple(p.split("=", 1)) for p in query.split("&")])  # type: ignore[misc]
    assert caught.value.parameter == parameter


def test_exact_values_go_to_the_database_only_when_plain() -> None:
    query = parse_search([("PatientID", "P-1"), ("StudyInstanceUID", "1.2\\1.3"), ("AccessionNumber", "A*")])
    assert query.exact("00100020") == ["P-1"]
    assert query.exact("0020000D") == ["1.2", "1.3"]
    assert query.exact("00080050") is None
    assert parse_search([("PatientID", "")]).exact("00100020") is None


def test_returned_keys_and_selection() -> None:
    query = parse_search([("includefield", "StudyDescription,00100010"), ("PatientID", "P-001"),
                          ("limit", "5"), ("offset", "2")])
    keys = query.returned_keys("study")
    assert "00081030" in keys and "00100020" in keys and keys.count("00100010") == 1
    assert (query.limit, query.offset) == (5, 2)
    chosen = select(STUDY, ("0020000D", "00081030", "00280010"), include_all=False)
    assert list(chosen) == ["0020000D", "00081030"]
    assert select(STUDY, (), include_all=True) == STUDY


def test_resolve_attribute_accepts_keywords_and_tags() -> None:
    assert resolve_attribute("StudyDate") == ("00080020", "DA")
    assert resolve_attribute("0020000d") == ("0020000D", "UI")
