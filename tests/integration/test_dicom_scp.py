"""The edge's DICOM SCP on a loopback port, driven by pynetdicom SCUs and the modality simulator."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification  # type: ignore[attr-defined]

from devices.modality.errors import AssociationRejectedError
from devices.modality.scu import send_study
from edge.dicom import fastrsp, status
from edge.dicom.part10 import encode_file_meta
from edge.dicom.scp import DicomServer, ScpConfig
from edge.dicom.store import InstanceStore, StoreLimits
from tests.unit.edge.test_dicom_support import (
    COMPRESSED_SYNTAXES,
    CT_IMAGE_STORAGE,
    NATIVE_SYNTAXES,
    ct_study,
    dataset_bytes,
    in_syntax,
    minimal_instance,
    part10,
)

pytestmark = pytest.mark.integration

ALLOWED = ("MODALITY", "CT_QC_01")
ServerFactory = Callable[..., DicomServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    servers: list[DicomServer] = []

    def make(*, limits: StoreLimits | None = None, **config: object) -> DicomServer:
        store = InstanceStore(tmp_path / f"store{len(servers)}", limits=limits or StoreLimits(min_free_bytes=0))
        options: dict[str, object] = {"ae_title": "EDGE", "port": 0, "allowed_calling_aets": ALLOWED}
        options.update(config)
        server = DicomServer(store, ScpConfig(**options))  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        server.store.close()


@pytest.fixture
def server(make_server: ServerFactory) -> DicomServer:
    return make_server()


@pytest.fixture
def raw_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pynetdicom send a file's dataset bytes as they are on disk (no decode and re-encode)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def _associate(server: DicomServer, contexts: list[tuple[str, list[str]]], *, calling: str = "MODALITY",
               ssl_context: ssl.SSLContext | None = None) -> Association:
    ae = AE(ae_title=calling)
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    host, port = server.address
    assoc = ae.associate(host, port, ae_title="EDGE", tls_args=(ssl_context, "") if ssl_context else None)
    return assoc


def _store_file(server: DicomServer, path: Path, transfer_syntax: str, sop_class: str = CT_IMAGE_STORAGE) -> int:
    assoc = _associate(server, [(sop_class, [transfer_syntax])])
    assert assoc.is_established
    try:
        reply = assoc.send_c_store(path)
        return int(reply.Status)
    finally:
        assoc.release()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_echo_and_a_simulated_ct_study(server: DicomServer) -> None:
    study = ct_study(slices=4)
    host, port = server.address
    report = send_study(host, port, "EDGE", "CT_QC_01", study)
    assert report.echo_status == status.SUCCESS
    assert report.all_succeeded
    assert report.tcp_nodelay
    record = server.store.index.study(str(study.study_instance_uid))
    assert record is not None and record.instance_count == 4
    for ds in study.instances:
        held = server.store.index.instance(str(ds.SOPInstanceUID))
        assert held is not None and dataset_bytes(server.store.read(held)) == dataset_bytes(part10(ds))


def test_a_calling_ae_title_not_on_the_allowlist_is_rejected(server: DicomServer) -> None:
    host, port = server.address
    with pytest.raises(AssociationRejectedError) as caught:
        send_study(host, port, "EDGE", "INTRUDER", ct_study(slices=1))
    # A-ASSOCIATE-RJ: rejected-permanent (1), service-user (1), calling AE title not recognised (3); PS3.8 9.3.4
    assert (caught.value.result, caught.value.source, caught.value.reason) == (1, 1, 3)
    assert server.store.used_bytes == 0


def test_an_unknown_sop_class_is_refused_at_negotiation(server: DicomServer) -> None:
    private_class = "1.2.826.0.1.3680043.9.9999.1"
    assoc = _associate(server, [(private_class, ["1.2.840.10008.1.2.1"]), (Verification, ["1.2.840.10008.1.2"])])
    try:
        assert assoc.is_established
        [rejected] = assoc.rejected_contexts
        assert rejected.abstract_syntax == private_class
        assert rejected.result == 0x03  # abstract syntax not supported (PS3.8 9.3.3.2)
        with pytest.raises(ValueError, match="No presentation context"):
            assoc.send_c_store(minimal_instance(sop_class=private_class))
    finally:
        assoc.release()


@pytest.mark.usefixtures("raw_files")
def test_corrupt_and_inconsistent_datasets_get_cannot_understand_statuses(server: DicomServer,
                                                                         tmp_path: Path) -> None:
    meta = encode_file_meta(sop_class_uid=CT_IMAGE_STORAGE, sop_instance_uid="1.2.826.7.1",
                            transfer_syntax_uid="1.2.840.10008.1.2.1")
    garbage = _write(tmp_path, "garbage.dcm", meta + bytes((i * 37) % 256 for i in range(4000)))
    assert _store_file(server, garbage, "1.2.840.10008.1.2.1") in (status.CANNOT_UNDERSTAND, status.MISSING_ATTRIBUTE)

    ds = minimal_instance()
    mismatched = encode_file_meta(sop_class_uid=CT_IMAGE_STORAGE, sop_instance_uid="1.2.826.7.2",
                                  transfer_syntax_uid="1.2.840.10008.1.2.1") + dataset_bytes(part10(ds))
    assert _store_file(server, _write(tmp_path, "mismatch.dcm", mismatched), "1.2.840.10008.1.2.1") == \
        status.UID_MISMATCH

    no_study = minimal_instance()
    del no_study.StudyInstanceUID
    assert _store_file(server, _write(tmp_path, "nostudy.dcm", part10(no_study)), "1.2.840.10008.1.2.1") == \
        status.MISSING_ATTRIBUTE
    assert server.store.used_bytes == 0


def test_a_duplicate_instance_is_accepted_once(server: DicomServer, tmp_path: Path) -> None:
    ds = minimal_instance()
    path = _write(tmp_path, "ct.dcm", part10(ds))
    assert _store_file(server, path, "1.2.840.10008.1.2.1") == status.SUCCESS
    assert _store_file(server, path, "1.2.840.10008.1.2.1") == status.SUCCESS
    assert len(list(server.store.root.rglob("*.dcm"))) == 1
    assert server.store.index.study(str(ds.StudyInstanceUID)).instance_count == 1  # type: ignore[union-attr]


def test_a_full_disk_budget_answers_out_of_resources(make_server: ServerFactory, tmp_path: Path) -> None:
    first = part10(minimal_instance())
    server = make_server(limits=StoreLimits(max_bytes=len(first) + 100, min_free_bytes=0))
    assert _store_file(server, _write(tmp_path, "a.dcm", first), "1.2.840.10008.1.2.1") == status.SUCCESS
    second = _write(tmp_path, "b.dcm", part10(minimal_instance()))
    assert _store_file(server, second, "1.2.840.10008.1.2.1") == status.OUT_OF_RESOURCES


@pytest.mark.usefixtures("raw_files")
@pytest.mark.parametrize("transfer_syntax", COMPRESSED_SYNTAXES + NATIVE_SYNTAXES)
def test_every_transfer_syntax_is_stored_byte_exact(server: DicomServer, tmp_path: Path,
                                                    transfer_syntax: str) -> None:
    source = part10(in_syntax(ct_study(slices=1, seed=3).instances[0], transfer_syntax))
    path = _write(tmp_path, "in.dcm", source)
    assert _store_file(server, path, transfer_syntax) == status.SUCCESS
    [stored] = list(server.store.root.rglob("*.dcm"))
    held = stored.read_bytes()
    assert dataset_bytes(held) == dataset_bytes(source)
    assert server.store.index.instance(stored.stem).transfer_syntax_uid == transfer_syntax  # type: ignore[union-attr]


def test_tcp_nodelay_is_set_on_association_sockets(server: DicomServer) -> None:
    assoc = _associate(server, [(Verification, ["1.2.840.10008.1.2"])])
    try:
        assert assoc.is_established
        [acceptor] = server._server.active_associations  # type: ignore[union-attr]
        raw = acceptor.dul.socket.socket  # type: ignore[union-attr]
        assert raw is not None
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        assoc.release()


def _find(server: DicomServer, identifier: Dataset) -> list[tuple[int, Dataset | None]]:
    assoc = _associate(server, [(StudyRootQueryRetrieveInformationModelFind, ["1.2.840.10008.1.2"])])
    assert assoc.is_established
    try:
        return [(int(s.Status), i) for s, i in
                assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)]
    finally:
        assoc.release()


def test_c_find_at_study_and_series_level(server: DicomServer) -> None:
    study = ct_study(slices=2, seed=11)
    host, port = server.address
    assert send_study(host, port, "EDGE", "MODALITY", study).all_succeeded
    first = study.instances[0]

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = str(first.PatientID)[:2] + "*"
    query.StudyDate = f"{first.StudyDate}-"
    query.StudyInstanceUID = ""
    query.NumberOfStudyRelatedInstances = ""
    query.PatientName = ""
    responses = _find(server, query)
    assert [code for code, _ in responses] == [status.PENDING, status.SUCCESS]
    match = responses[0][1]
    assert match is not None
    assert match.StudyInstanceUID == study.study_instance_uid
    assert int(match.NumberOfStudyRelatedInstances) == 2
    assert str(match.PatientName) == str(first.PatientName)  # UTF-8 Chinese name survives the round trip

    series_query = Dataset()
    series_query.QueryRetrieveLevel = "SERIES"
    series_query.StudyInstanceUID = study.study_instance_uid
    series_query.SeriesInstanceUID = ""
    series_query.Modality = "CT"
    series_query.NumberOfSeriesRelatedInstances = ""
    [(pending, series), (done, _)] = _find(server, series_query)
    assert (pending, done) == (status.PENDING, status.SUCCESS)
    assert series is not None and series.SeriesInstanceUID == first.SeriesInstanceUID

    nothing = Dataset()
    nothing.QueryRetrieveLevel = "STUDY"
    nothing.PatientID = "NOBODY"
    assert [code for code, _ in _find(server, nothing)] == [status.SUCCESS]
    bad_level = Dataset()
    bad_level.QueryRetrieveLevel = "PATIENT"
    assert [code for code, _ in _find(server, bad_level)] == [status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS]


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "scp.crt", tmp_path / "scp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_when_configured(make_server: ServerFactory, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = make_server(tls_certfile=cert, tls_keyfile=key)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    client.check_hostname = False
    study = ct_study(slices=1)
    host, port = server.address
    report = send_study(host, port, "EDGE", "MODALITY", study, tls=client)
    assert report.all_succeeded
    plain = _associate(server, [(Verification, ["1.2.840.10008.1.2"])])
    assert not plain.is_established  # a plain-TCP peer cannot talk to the TLS port


def test_pydicom_validation_is_off_only_while_a_server_runs(tmp_path: Path) -> None:
    from pydicom import config as pydicom_config

    before = pydicom_config.settings.reading_validation_mode
    servers = [DicomServer(InstanceStore(tmp_path / str(i), limits=StoreLimits(min_free_bytes=0)),
                           ScpConfig(port=0)) for i in range(2)]
    for server in servers:
        server.start()
    assert pydicom_config.settings.reading_validation_mode == pydicom_config.IGNORE
    servers[0].stop()
    assert pydicom_config.settings.reading_validation_mode == pydicom_config.IGNORE  # the other still runs
    servers[1].stop()
    assert pydicom_config.settings.reading_validation_mode == before
    for server in servers:
        server.store.close()


def test_store_responses_take_the_hand_encoded_path(server: DicomServer, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[int] = []
    real = fastrsp.encode_store_rsp

    def counting(**fields: Any) -> bytes:
        encoded.append(fields["status"])
        return real(**fields)

    monkeypatch.setattr(fastrsp, "encode_store_rsp", counting)
    host, port = server.address
    assert send_study(host, port, "EDGE", "MODALITY", ct_study(slices=3, seed=41)).all_succeeded
    assert encoded == [status.SUCCESS] * 3
