"""DICOMweb reads (QIDO-RS, WADO-RS, rendered) against instances in the object store and `dicom_instances`,
through the real app on the fixture database: site scoping, matching, paging, metadata, multipart bodies,
frames in native and compressed syntaxes, rendering with windows, audit records."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from numpy.typing import NDArray
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.uid import ExplicitVRLittleEndian

from cloud.dicomweb.store import FileObjectStore
from deploy.postgres import PostgresEndpoint
from devices.modality import SYNTAXES_BY_NAME, encode_study, generate_ct_study, generate_us_study
from devices.modality.dataset_modules import CHINA_STANDARD_TIME
from tests.integration.test_api_support import bearer, login, scratch_database, seed_world
from tests.integration.test_dicomweb_support import (
    Archive,
    dicomweb_client,
    multipart_parts,
    part10,
    register_edge,
    stow,
)

pytestmark = pytest.mark.integration

DICOM_JSON = "application/dicom+json"
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"


def day(y: int, m: int, d: int) -> dt.datetime:
    return dt.datetime(y, m, d, 9, 30, tzinfo=CHINA_STANDARD_TIME)


@dataclass
class World:
    client: TestClient
    db_url: str
    ct_a: list[bytes]  # site-a, patient P-A1, 2024-05-01, 4 slices 64x64
    us_a: bytes  # site-a, patient P-A2, 2024-06-10, colour cine 5 frames
    jls_a: bytes  # site-a, patient P-A1, 2024-07-02, JPEG-LS
    rle_a: bytes  # site-a, no patient known (edge-a's site), RLE
    ct_b: list[bytes]  # site-b, patient P-B1, 2024-05-20
    edge_a_key: Ed25519PrivateKey

    def token(self, username: str) -> dict[str, str]:
        return bearer(login(self.client, username))


def uid_of(data: bytes, keyword: str) -> str:
    return str(dcmread(io.BytesIO(data), stop_before_pixels=True).get(keyword))


@pytest.fixture(scope="module")
def world(postgres: PostgresEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with scratch_database(postgres) as db:
        seed_world(db.url)
        edge_a_key = register_edge(db.url, "edge-a", "site-a")
        register_edge(db.url, "edge-b", "site-b")
        store_dir = tmp_path_factory.mktemp("dicom")
        client = dicomweb_client(db.url, store_dir)
        archive = Archive(db.url, FileObjectStore(store_dir, fsync=False))
        ct_a = archive.put_study(generate_ct_study(slices=4, rows=64, columns=64, seed=1, when=day(2024, 5, 1)),
                                 edge_id="edge-a", patient_id="P-A1")
        us_a = archive.put_study(generate_us_study(frames=5, rows=48, columns=64, color=True, seed=2,
                                                   when=day(2024, 6, 10)), edge_id="edge-a", patient_id="P-A2")[0]
        jls = encode_study(generate_ct_study(slices=1, rows=64, columns=64, seed=3, when=day(2024, 7, 2)),
                           SYNTAXES_BY_NAME["jpeg-ls"])
        jls_a = archive.put_study(jls, edge_id="edge-a", patient_id="P-A1")[0]
        rle = encode_study(generate_ct_study(slices=1, rows=32, columns=32, seed=4, when=day(2024, 8, 3)),
                           SYNTAXES_BY_NAME["rle"])
        rle_a = archive.put_study(rle, edge_id="edge-a", patient_id=None)[0]
        ct_b = archive.put_study(generate_ct_study(slices=2, rows=64, columns=64, seed=5, when=day(2024, 5, 20)),
                                 edge_id="edge-b", patient_id="P-B1")
        with client:
            yield World(client, db.url, ct_a, us_a, jls_a, rle_a, ct_b, edge_a_key)


def studies(world: World, user: str, query: str = "", **headers: str) -> list[dict[str, Any]]:
    response = world.client.get(f"/dicomweb/studies{query}", headers={**world.token(user), **headers})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == DICOM_JSON
    result: list[dict[str, Any]] = response.json()
    return result


def values(items: list[dict[str, Any]], tag: str) -> list[Any]:
    return [item[tag]["Value"][0] for item in items]


# --- QIDO-RS -------------------------------------------------------------------------------------------------


def test_studies_are_scoped_to_the_callers_sites(world: World) -> None:
    site_a = {uid_of(world.ct_a[0], "StudyInstanceUID"), uid_of(world.us_a, "StudyInstanceUID"),
              uid_of(world.jls_a, "StudyInstanceUID"), uid_of(world.rle_a, "StudyInstanceUID")}
    site_b = {uid_of(world.ct_b[0], "StudyInstanceUID")}
    assert set(values(studies(world, "doc-a"), STUDY_UID)) == site_a
    assert set(values(studies(world, "doc-b"), STUDY_UID)) == site_b
    assert set(values(studies(world, "admin"), STUDY_UID)) == site_a | site_b
    assert world.client.get("/dicomweb/studies").status_code == 401
    assert world.client.get("/dicomweb/studies", headers=world.token("nobody")).status_code == 403


def test_study_results_carry_the_ps3_18_attributes_newest_first(world: World) -> None:
    found = studies(world, "doc-a")
    assert values(found, "00080020") == ["20240803", "20240702", "20240610", "20240501"]
    ct = next(s for s in found if s[STUDY_UID]["Value"] == [uid_of(world.ct_a[0], "StudyInstanceUID")])
    assert ct["00080061"]["Value"] == ["CT"]
    assert ct["00201206"]["Value"] == [1] and ct["00201208"]["Value"] == [4]
    assert ct["00100020"]["Value"] == ["P-A1"]  # the archive's (pseudonymous) patient id
    assert ct["00080056"]["Value"] == ["ONLINE"]
    assert ct["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{ct[STUDY_UID]['Value'][0]}")
    assert "00281050" not in ct  # window centre is not a study attribute


def test_matching_on_patient_id_date_range_wildcards_and_uid_lists(world: World) -> None:
    assert values(studies(world, "doc-a", "?PatientID=P-A1"), "00080020") == ["20240702", "20240501"]
    assert values(studies(world, "doc-a", "?StudyDate=20240601-20240731"), "00080020") == ["20240702", "20240610"]
    assert values(studies(world, "doc-a", "?StudyDate=-20240601"), "00080020") == ["20240501"]
    assert values(studies(world, "doc-a", "?00080020=20240610-"), "00080020") == ["20240803", "20240702", "20240610"]
    assert values(studies(world, "doc-a", "?ModalitiesInStudy=US"), "00080020") == ["20240610"]
    assert values(studies(world, "doc-a", "?PatientID=P-A*"), "00080020") == ["20240702", "20240610", "20240501"]
    pair = f"{uid_of(world.ct_a[0], 'StudyInstanceUID')}\\{uid_of(world.ct_b[0], 'StudyInstanceUID')}"
    assert values(studies(world, "doc-a", f"?StudyInstanceUID={pair}"), "00080020") == ["20240501"]
    assert studies(world, "doc-a", "?PatientID=P-B1") == []  # another site's patient: nothing, with 200
    name = dcmread(io.BytesIO(world.us_a), stop_before_pixels=True).PatientName
    family = str(name).split("^")[0].lower()
    assert studies(world, "doc-a", f"?PatientName={family}*") == []
    assert values(studies(world, "doc-a", f"?PatientName={family}*&fuzzymatching=true"), "00080020") == ["20240610"]


def test_limit_offset_and_the_warning_header(world: World) -> None:
    response = world.client.get("/dicomweb/studies?limit=2&offset=1", headers=world.token("doc-a"))
    assert values(response.json(), "00080020") == ["20240702", "20240610"]
    assert response.headers["warning"].startswith("299 ") and "1 additional" in response.headers["warning"]
    last = world.client.get("/dicomweb/studies?limit=2&offset=2", headers=world.token("doc-a"))
    assert values(last.json(), "00080020") == ["20240610", "20240501"] and "warning" not in last.headers


def test_includefield_adds_attributes(world: World) -> None:
    plain = studies(world, "doc-a", "?PatientID=P-A2")[0]
    assert "00080070" not in plain
    included = studies(world, "doc-a", "?PatientID=P-A2&includefield=Manufacturer,00081030")[0]
    assert "00081030" in included
    assert "00080070" not in included  # Manufacturer is a series-level attribute, not a study one
    series = world.client.get(
        f"/dicomweb/studies/{uid_of(world.us_a, 'StudyInstanceUID')}/series?includefield=BodyPartExamined",
        headers=world.token("doc-a")).json()
    assert series[0]["00180015"]["Value"] == ["ABDOMEN"]
    everything = studies(world, "doc-a", "?PatientID=P-A2&includefield=all")[0]
    assert {"00100010", "00100030", "00081030", "00200010"} <= set(everything)


@pytest.mark.parametrize(("query", "status"), [
    ("?NoSuchKeyword=1", 400), ("?limit=0", 400), ("?limit=x", 400), ("?fuzzymatching=maybe", 400),
    ("?includefield=Bogus", 400), ("?ReferencedStudySequence=1", 400),
])
def test_invalid_searches_are_400(world: World, query: str, status: int) -> None:
    assert world.client.get(f"/dicomweb/studies{query}", headers=world.token("doc-a")).status_code == status


def test_search_needs_a_json_accept(world: World) -> None:
    xml = "multipart/related; type=application/dicom+xml"
    response = world.client.get("/dicomweb/studies", headers={**world.token("doc-a"), "Accept": xml})
    assert response.status_code == 406


def test_series_and_instances_of_a_study(world: World) -> None:
    study = uid_of(world.ct_a[0], "StudyInstanceUID")
    series = world.client.get(f"/dicomweb/studies/{study}/series", headers=world.token("doc-a")).json()
    assert len(series) == 1 and series[0]["00080060"]["Value"] == ["CT"]
    assert series[0]["00201209"]["Value"] == [4]
    series_uid = series[0][SERIES_UID]["Value"][0]
    instances = world.client.get(f"/dicomweb/studies/{study}/series/{series_uid}/instances",
                                 headers=world.token("doc-a")).json()
    assert values(instances, "00200013") == [1, 2, 3, 4]
    assert values(instances, SOP_UID) == [uid_of(f, "SOPInstanceUID") for f in world.ct_a]
    assert values(instances, "00280010") == [64, 64, 64, 64]
    first_url = instances[0]["00081190"]["Value"][0]
    assert first_url.endswith(f"/series/{series_uid}/instances/{values(instances, SOP_UID)[0]}")
    one = world.client.get(f"/dicomweb/studies/{study}/series/{series_uid}/instances?InstanceNumber=3",
                           headers=world.token("doc-a")).json()
    assert values(one, "00200013") == [3]
    assert world.client.get(f"/dicomweb/studies/{study}/series", headers=world.token("doc-b")).status_code == 404
    assert world.client.get("/dicomweb/studies/1.2.3/series", headers=world.token("doc-a")).status_code == 404


def test_an_instance_without_a_known_patient_belongs_to_its_edges_site(world: World) -> None:
    study = uid_of(world.rle_a, "StudyInstanceUID")
    found = studies(world, "doc-a", f"?StudyInstanceUID={study}")
    assert len(found) == 1
    assert found[0]["00100020"]["Value"] == [uid_of(world.rle_a, "PatientID")]  # the DICOM Patient ID
    assert studies(world, "doc-b", f"?StudyInstanceUID={study}") == []


# --- WADO-RS ----------------------------------------------------------------------------------------------------


def _path(data: bytes) -> str:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def test_metadata_has_every_attribute_but_bulk_data(world: World) -> None:
    study = uid_of(world.ct_a[0], "StudyInstanceUID")
    response = world.client.get(f"/dicomweb/studies/{study}/metadata", headers=world.token("doc-a"))
    assert response.status_code == 200 and response.headers["content-type"] == DICOM_JSON
    items = response.json()
    assert values(items, "00200013") == [1, 2, 3, 4]
    first = items[0]
    assert first["00280030"]["Value"]  # Pixel Spacing
    assert first["00281050"]["Value"][0] == 40  # the first VOI window centre
    pixel = first["7FE00010"]
    assert "Value" not in pixel and "InlineBinary" not in pixel
    assert pixel["BulkDataURI"].endswith(_path(world.ct_a[0]) + "/frames/1")
    single = world.client.get(_path(world.us_a) + "/metadata", headers=world.token("doc-a")).json()
    assert single[0]["7FE00010"]["BulkDataURI"].endswith("/frames/1,2,3,4,5")
    assert world.client.get(f"/dicomweb/studies/{study}/metadata", headers=world.token("doc-b")).status_code == 404


def test_retrieve_instances_as_stored_and_in_explicit_vr_little_endian(world: World) -> None:
    study = uid_of(world.ct_a[0], "StudyInstanceUID")
    stored = world.client.get(f"/dicomweb/studies/{study}", headers={
        **world.token("doc-a"), "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    assert stored.status_code == 200
    assert sorted(p.data for p in multipart_parts(stored)) == sorted(world.ct_a)
    converted = world.client.get(_path(world.jls_a), headers={
        **world.token("doc-a"), "Accept": 'multipart/related; type="application/dicom"'})
    assert converted.status_code == 200
    (only,) = multipart_parts(converted)
    assert only.headers["content-type"].endswith(f"transfer-syntax={ExplicitVRLittleEndian}")
    decoded = dcmread(io.BytesIO(only.data))
    original = dcmread(io.BytesIO(world.jls_a))
    assert decoded.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(decoded.pixel_array, original.pixel_array)  # JPEG-LS lossless
    baseline = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    refused = world.client.get(_path(world.jls_a), headers={**world.token("doc-a"), "Accept": baseline})
    assert refused.status_code == 406


def test_frames_uncompressed_and_as_stored(world: World) -> None:
    ct = dcmread(io.BytesIO(world.ct_a[2]))
    native = world.client.get(_path(world.ct_a[2]) + "/frames/1", headers=world.token("doc-a"))
    assert native.status_code == 200
    (frame,) = multipart_parts(native)
    assert frame.data == ct.PixelData
    us = dcmread(io.BytesIO(world.us_a))
    two = world.client.get(_path(world.us_a) + "/frames/2,5", headers={
        **world.token("doc-a"), "Accept": 'multipart/related; type="application/octet-stream"'})
    got = [np.frombuffer(p.data, np.uint8).reshape(48, 64, 3) for p in multipart_parts(two)]
    np.testing.assert_array_equal(got[0], us.pixel_array[1])
    np.testing.assert_array_equal(got[1], us.pixel_array[4])
    assert world.client.get(_path(world.us_a) + "/frames/6", headers=world.token("doc-a")).status_code == 404
    assert world.client.get(_path(world.us_a) + "/frames/0", headers=world.token("doc-a")).status_code == 400
    jls = dcmread(io.BytesIO(world.jls_a))
    as_stored = world.client.get(_path(world.jls_a) + "/frames/1", headers={
        **world.token("doc-a"), "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    (bitstream,) = multipart_parts(as_stored)
    assert bitstream.data == get_frame(jls.PixelData, 0, number_of_frames=1)
    assert "transfer-syntax=1.2.840.10008.1.2.4.80" in bitstream.headers["content-type"]
    decompressed = world.client.get(_path(world.jls_a) + "/frames/1", headers=world.token("doc-a"))
    (plain,) = multipart_parts(decompressed)
    np.testing.assert_array_equal(np.frombuffer(plain.data, "<i2").reshape(64, 64), jls.pixel_array)
    jls_type = world.client.get(_path(world.jls_a) + "/frames/1", headers={
        **world.token("doc-a"), "Accept": 'multipart/related; type="image/jls"'})
    assert jls_type.status_code == 200 and multipart_parts(jls_type)[0].data == bitstream.data
    wrong = world.client.get(_path(world.ct_a[0]) + "/frames/1", headers={
        **world.token("doc-a"), "Accept": 'multipart/related; type="image/jp2"'})
    assert wrong.status_code == 406


def _png(response_content: bytes) -> NDArray[Any]:
    image = Image.open(io.BytesIO(response_content))
    assert image.format == "PNG"
    return np.asarray(image)


def test_rendered_frames_apply_the_requested_window(world: World) -> None:
    ct = dcmread(io.BytesIO(world.ct_a[1]))
    hu = ct.pixel_array.astype(np.float64) * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    response = world.client.get(_path(world.ct_a[1]) + "/rendered?window=-600,1500,linear-exact",
                                headers={**world.token("doc-a"), "Accept": "image/png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    expected = np.rint(np.clip((hu + 600) / 1500 + 0.5, 0, 1) * 255)
    assert np.abs(_png(response.content).astype(int) - expected).max() <= 1
    bone = _png(world.client.get(_path(world.ct_a[1]) + "/frames/1/rendered?window=400,1800",
                                 headers={**world.token("doc-a"), "Accept": "image/png"}).content)
    assert not np.array_equal(bone, _png(response.content))
    default = world.client.get(_path(world.ct_a[1]) + "/rendered", headers=world.token("doc-a"))
    assert default.headers["content-type"] == "image/jpeg" and default.content[:2] == b"\xff\xd8"
    small = world.client.get(_path(world.ct_a[1]) + "/rendered?viewport=32,32",
                             headers={**world.token("doc-a"), "Accept": "image/png"})
    assert _png(small.content).shape == (32, 32)


def test_rendered_colour_cine_frames_and_thumbnails(world: World) -> None:
    us = dcmread(io.BytesIO(world.us_a))
    third = world.client.get(_path(world.us_a) + "/frames/3/rendered", headers={**world.token("doc-a"),
                                                                               "Accept": "image/png"})
    np.testing.assert_array_equal(_png(third.content), us.pixel_array[2])
    study, series = uid_of(world.ct_a[0], "StudyInstanceUID"), uid_of(world.ct_a[0], "SeriesInstanceUID")
    thumb = world.client.get(f"/dicomweb/studies/{study}/series/{series}/thumbnail",
                             headers={**world.token("doc-a"), "Accept": "image/png"})
    assert thumb.status_code == 200 and _png(thumb.content).shape == (64, 64)


@pytest.mark.parametrize(("suffix", "accept", "status"), [
    ("/rendered?window=40", "image/png", 400), ("/rendered?window=40,0", "image/png", 400),
    ("/rendered?window=40,400,cubic", "image/png", 400), ("/rendered?quality=0", "image/jpeg", 400),
    ("/rendered", "image/gif", 406), ("/frames/2/rendered", "image/png", 404),
])
def test_bad_rendering_requests(world: World, suffix: str, accept: str, status: int) -> None:
    response = world.client.get(_path(world.ct_a[0]) + suffix, headers={**world.token("doc-a"), "Accept": accept})
    assert response.status_code == status


def test_other_sites_instances_are_not_found(world: World) -> None:
    for suffix in ("", "/metadata", "/frames/1", "/rendered"):
        response = world.client.get(_path(world.ct_b[0]) + suffix, headers=world.token("doc-a"))
        assert response.status_code == 404, suffix
        assert world.client.get(_path(world.ct_b[0]) + suffix, headers=world.token("doc-b")).status_code == 200


def test_reads_are_audited_per_patient(world: World) -> None:
    world.client.get(_path(world.us_a) + "/rendered", headers=world.token("doc-a"))
    studies(world, "doc-a", "?PatientID=P-A1")
    with psycopg.connect(world.db_url) as conn:
        rows = conn.execute("SELECT event, patient_id FROM access_log WHERE username = 'doc-a'"
                            " AND event LIKE 'dicomweb.%%'").fetchall()
    assert ("dicomweb.rendered", "P-A2") in rows
    assert ("dicomweb.search", "P-A1") in rows


def test_instances_uploaded_through_stow_rs_are_found_and_rendered(world: World) -> None:
    study = generate_ct_study(slices=2, rows=32, columns=32, seed=11, when=day(2024, 9, 9))
    files = [part10(ds) for ds in study.instances]
    with psycopg.connect(world.db_url, autocommit=True) as conn:  # the manifest maps the study to P-A2
        conn.execute("INSERT INTO dicom_manifests (study_instance_uid, edge_id, patient_id, completed_at, body)"
                     " VALUES (%s, 'edge-a', 'P-A2', now(), '{}')", (str(study.study_instance_uid),))
    stored = stow("", files, edge_id="edge-a", key=world.edge_a_key, client=world.client)
    assert stored.status_code == 200, stored.text
    found = studies(world, "doc-a", "?PatientID=P-A2&StudyDate=20240909")
    assert values(found, STUDY_UID) == [str(study.study_instance_uid)]
    assert found[0]["00201208"]["Value"] == [2]
    assert studies(world, "doc-b", f"?StudyInstanceUID={study.study_instance_uid}") == []
    image = world.client.get(_path(files[1]) + "/rendered?window=40,400", headers={**world.token("doc-a"),
                                                                                   "Accept": "image/png"})
    assert image.status_code == 200 and _png(image.content).shape == (32, 32)


def test_experts_see_only_the_studies_of_their_consultations(world: World) -> None:
    assert studies(world, "expert") == []
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO consultations (patient_id, site_id, requester_id, state, urgency, assigned_expert_id,"
            " created_at, updated_at)"
            " SELECT 'P-A2', 'site-a', r.user_id, 'accepted', 'routine', e.user_id, now(), now()"
            " FROM users r, users e WHERE r.username = 'doc-a' AND e.username = 'expert'")
    assert set(values(studies(world, "expert"), "00100020")) == {"P-A2"}
    assert world.client.get(_path(world.us_a) + "/rendered", headers=world.token("expert")).status_code == 200
    assert world.client.get(_path(world.ct_a[0]) + "/rendered", headers=world.token("expert")).status_code == 404
