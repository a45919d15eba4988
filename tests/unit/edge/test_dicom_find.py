"""C-FIND matching (PS3.4 C.2.2.2) and the STUDY/SERIES searches over the edge's index."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from edge.dicom import find
from edge.dicom.errors import QueryError
from edge.dicom.store import InstanceStore, StoreLimits
from tests.unit.edge.test_dicom_support import minimal_instance, part10


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("", "anything", True),
    ("*", "", True),
    ("QC0001", "QC0001", True),
    ("QC0001", "QC00011", False),
    ("QC*", "QC0001", True),
    ("QC?001", "QC0001", True),
    ("QC?001", "QC00001", False),
    ("*01", "QC0001", True),
    ("qc*", "QC0001", False),  # single value and wildcard matching are case-sensitive outside PN
    ("a.b*", "axb1", False),  # regex characters are literal
])
def test_text_matching(pattern: str, value: str, expected: bool) -> None:
    assert find.match_text(pattern, value) is expected


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("wang*", "Wang^Wei=王^伟", True),
    ("王^伟", "Wang^Wei=王^伟", True),
    ("WANG^WEI", "Wang^Wei", True),
    ("Li*", "Wang^Wei=王^伟", False),
])
def test_person_name_matching_is_case_insensitive_on_any_component_group(pattern: str, value: str,
                                                                           expected: bool) -> None:
    assert find.match_person_name(pattern, value) is expected


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("20261101", "20261101", True),
    ("20261101-20261130", "20261115", True),
    ("20261101-20261130", "20261201", False),
    ("-20261101", "20261031", True),
    ("20261101-", "20261031", False),
    ("2026.11.01-2026.11.02", "20261102", True),
    ("20261101", "", False),
])
def test_date_range_matching(pattern: str, value: str, expected: bool) -> None:
    assert find.match_range(pattern, value, kind="DA") is expected


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("0800-1200", "083000.123", True),
    ("0800-1200", "120059", True),  # an upper bound of HHMM covers the whole minute
    ("0800-1200", "120100", False),
    ("-0800", "075959", True),
    ("1030", "103015", True),
    ("103015", "103016", False),
])
def test_time_range_matching(pattern: str, value: str, expected: bool) -> None:
    assert find.match_range(pattern, value, kind="TM") is expected


def test_uid_list_and_multi_valued_matching() -> None:
    assert find.match_uid_list("1.2.3\\1.2.4", "1.2.4")
    assert not find.match_uid_list("1.2.3\\1.2.4", "1.2.5")
    assert find.match_any_of("MR\\CT", ("CT", "SR"))
    assert not find.match_any_of("MR", ("CT", "SR"))
    assert find.match_integer("3", 3) and not find.match_integer("3", None) and not find.match_integer("x", 3)


def _identifier(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_a_query_without_a_supported_level_is_refused() -> None:
    with pytest.raises(QueryError):
        find.parse_query(_identifier("IMAGE", PatientID=""))
    with pytest.raises(QueryError):
        find.parse_query(Dataset())


@pytest.fixture
def held(tmp_path: Path) -> InstanceStore:
    """Three studies: two CTs of one patient in November (one with two series), an MR in December."""
    store = InstanceStore(tmp_path, limits=StoreLimits(min_free_bytes=0))
    ct = minimal_instance(study="1.2.826.1.1", series="1.2.826.1.1.1", patient_id="QC0001", study_date="20261103",
                          accession="ACC1", charset="ISO_IR 192", patient_name="Wang^Wei=王^伟")
    store.put(part10(ct))
    store.put(part10(minimal_instance(study="1.2.826.1.1", series="1.2.826.1.1.1", patient_id="QC0001",
                                      instance_number=2)))
    store.put(part10(minimal_instance(study="1.2.826.1.1", series="1.2.826.1.1.2", modality="SR",
                                      series_number=9, patient_id="QC0001")))
    store.put(part10(minimal_instance(study="1.2.826.1.2", patient_id="QC0001", study_date="20261120",
                                      accession="ACC2")))
    store.put(part10(minimal_instance(study="1.2.826.1.3", patient_id="PW0002", study_date="20261205",
                                      modality="MR", accession="ACC3")))
    return store


def _search(store: InstanceStore, identifier: Dataset) -> list[Dataset]:
    return list(find.search(store.index, find.parse_query(identifier), retrieve_ae="EDGE"))


def test_study_level_with_wildcard_range_and_counts(held: InstanceStore) -> None:
    results = _search(held, _identifier("STUDY", PatientID="QC*", StudyDate="20261101-20261110",
                                        StudyInstanceUID="", ModalitiesInStudy="", NumberOfStudyRelatedSeries="",
                                        NumberOfStudyRelatedInstances="", PatientName=""))
    assert len(results) == 1
    match = results[0]
    assert match.StudyInstanceUID == "1.2.826.1.1"
    assert list(match.ModalitiesInStudy) == ["CT", "SR"]
    assert (int(match.NumberOfStudyRelatedSeries), int(match.NumberOfStudyRelatedInstances)) == (2, 3)
    assert str(match.PatientName) == "Wang^Wei=王^伟"
    assert match.SpecificCharacterSet == "ISO_IR 192"
    assert match.RetrieveAETitle == "EDGE"
    assert match.QueryRetrieveLevel == "STUDY"


def test_study_level_by_modality_and_accession(held: InstanceStore) -> None:
    by_modality = _search(held, _identifier("STUDY", ModalitiesInStudy="MR", StudyInstanceUID=""))
    assert [r.StudyInstanceUID for r in by_modality] == ["1.2.826.1.3"]
    by_accession = _search(held, _identifier("STUDY", AccessionNumber="ACC2", StudyInstanceUID=""))
    assert [r.StudyInstanceUID for r in by_accession] == ["1.2.826.1.2"]
    by_uid_list = _search(held, _identifier("STUDY", StudyInstanceUID="1.2.826.1.2\\1.2.826.1.3"))
    assert sorted(r.StudyInstanceUID for r in by_uid_list) == ["1.2.826.1.2", "1.2.826.1.3"]
    by_name = _search(held, _identifier("STUDY", PatientName="wang*", StudyInstanceUID=""))
    assert [r.StudyInstanceUID for r in by_name] == ["1.2.826.1.1"]


def test_unknown_keys_come_back_empty(held: InstanceStore) -> None:
    results = _search(held, _identifier("STUDY", StudyInstanceUID="1.2.826.1.3", ReferringPhysicianName=""))
    assert len(results) == 1
    assert results[0].ReferringPhysicianName in ("", None)


def test_series_level_within_a_study(held: InstanceStore) -> None:
    results = _search(held, _identifier("SERIES", StudyInstanceUID="1.2.826.1.1", SeriesInstanceUID="",
                                        Modality="", SeriesNumber="", NumberOfSeriesRelatedInstances=""))
    assert [(r.SeriesInstanceUID, r.Modality, int(r.NumberOfSeriesRelatedInstances)) for r in results] == [
        ("1.2.826.1.1.1", "CT", 2), ("1.2.826.1.1.2", "SR", 1)]
    only_sr = _search(held, _identifier("SERIES", StudyInstanceUID="1.2.826.1.1", Modality="SR", SeriesNumber=""))
    assert [int(r.SeriesNumber) for r in only_sr] == [9]
    everywhere = _search(held, _identifier("SERIES", Modality="MR", SeriesInstanceUID=""))
    assert len(everywhere) == 1
