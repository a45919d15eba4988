"""The modality SCU against real Storage SCPs on loopback: pynetdicom in-process and dcmtk's storescp."""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import io
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.transport import ThreadedAssociationServer

from devices.modality.cli import add_parser, main
from devices.modality.errors import AssociationAbortedError, AssociationRejectedError, DicomConnectionError
from devices.modality.negotiation import VERIFICATION_SOP_CLASS
from devices.modality.report import Outcome
from devices.modality.scu import send_study
from devices.modality.studies import (
    CT_IMAGE_STORAGE,
    DX_IMAGE_STORAGE_FOR_PRESENTATION,
    US_MULTIFRAME_IMAGE_STORAGE,
    Study,
    generate_ct_study,
    generate_us_study,
)
from devices.modality.syntaxes import SYNTAXES_BY_NAME, encode_study

pytestmark = pytest.mark.integration

ALL_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, DeflatedExplicitVRLittleEndian]
STORAGE_CLASSES = [CT_IMAGE_STORAGE, US_MULTIFRAME_IMAGE_STORAGE, DX_IMAGE_STORAGE_FOR_PRESENTATION]


@dataclass
class Received:
    sop_instance_uid: str
    transfer_syntax: UID
    raw: bytes
    dataset: Dataset


def _peer_socket_nodelay(address: tuple[str, int]) -> bool | None:
    """TCP_NODELAY as the kernel reports it on the in-process socket bound to `address` (the SCU's end)."""
    for candidate in gc.get_objects():
        if isinstance(candidate, socket.socket) and candidate.fileno() != -1:
            try:
                if candidate.getsockname() == address:
                    return bool(candidate.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            except OSError:
                continue
    return None


@dataclass
class RecordingScp:
    """A pynetdicom Storage SCP that records every dataset and answers statuses chosen by Instance Number."""

    syntaxes: list[UID] = field(default_factory=lambda: list(ALL_SYNTAXES))
    statuses: dict[int, int] = field(default_factory=dict)
    abort_on: int | None = None
    require_calling_aet: list[str] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    peer_nodelay: list[bool | None] = field(default_factory=list)
    server: ThreadedAssociationServer | None = None

    def start(self) -> int:
        ae = AE("RECORDER")
        for sop_class in STORAGE_CLASSES:
            ae.add_supported_context(sop_class, self.syntaxes)
        ae.add_supported_context(VERIFICATION_SOP_CLASS)
        ae.require_calling_aet = self.require_calling_aet
        server = ae.start_server(
            ("127.0.0.1", 0), block=False, ssl_context=self.ssl_context,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo)],
        )
        assert server is not None  # non-blocking start returns the running server
        self.server = server
        return int(server.server_address[1])

    def _on_echo(self, event: evt.Event) -> int:
        requestor = event.assoc.requestor
        self.peer_nodelay.append(_peer_socket_nodelay((requestor.address, requestor.port)))
        return 0x0000

    def _on_store(self, event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        request = event.request
        assert isinstance(request, C_STORE) and request.DataSet is not None
        self.received.append(Received(str(ds.SOPInstanceUID), UID(event.context.transfer_syntax),
                                      bytes(request.DataSet.getvalue()), ds))
        number = int(ds.InstanceNumber)
        if number == self.abort_on:
            event.assoc.abort()
        return self.statuses.get(number, 0x0000)


@pytest.fixture
def start_scp() -> Iterator[Callable[..., tuple[RecordingScp, int]]]:
    started: list[RecordingScp] = []

    def start(**options: object) -> tuple[RecordingScp, int]:
        scp = RecordingScp(**options)  # type: ignore[arg-type]
        port = scp.start()
        started.append(scp)
        return scp, port

    yield start
    for scp in started:
        if scp.server is not None:
            scp.server.shutdown()


def small_ct(syntax: str = "explicit", slices: int = 5) -> Study:
    return encode_study(generate_ct_study(slices=slices, rows=64, columns=64, seed=21), SYNTAXES_BY_NAME[syntax])


def small_us(syntax: str = "explicit") -> Study:
    study = generate_us_study(frames=4, rows=48, columns=64, color=True, seed=22)
    return encode_study(study, SYNTAXES_BY_NAME[syntax])


def assert_arrived_intact(study: Study, received: list[Received]) -> None:
    """Same instances, in order, byte-identical to our own encoding in the negotiated syntax, same pixels."""
    assert [r.sop_instance_uid for r in received] == [str(ds.SOPInstanceUID) for ds in study.instances]
    for ds, got in zip(study.instances, received, strict=True):
        if got.transfer_syntax == UID(ds.file_meta.TransferSyntaxUID):
            ts = got.transfer_syntax
            assert got.raw == encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
        assert np.array_equal(got.dataset.pixel_array, ds.pixel_array)
        assert got.dataset.PatientName == ds.PatientName


@pytest.mark.parametrize("syntax", ["explicit", "rle", "deflate"])
def test_ct_series_arrives_byte_identical(start_scp: Callable[..., tuple[RecordingScp, int]], syntax: str) -> None:
    scp, port = start_scp()
    study = small_ct(syntax)
    progress: list[tuple[int, int]] = []
    report = send_study("127.0.0.1", port, "RECORDER", "SIM", study,
                        on_progress=lambda result, total: progress.append((result.index, total)))
    assert report.all_succeeded and report.echo_status == 0
    assert progress == [(i, 5) for i in range(5)]
    assert {r.transfer_syntax for r in scp.received} == {SYNTAXES_BY_NAME[syntax].uid}
    assert all(result.transfer_syntax_uid == SYNTAXES_BY_NAME[syntax].uid for result in report.results)
    assert all(result.bytes_sent > 0 for result in report.results)
    assert_arrived_intact(study, scp.received)


def test_ultrasound_multiframe_arrives_byte_identical(start_scp: Callable[..., tuple[RecordingScp, int]]) -> None:
    scp, port = start_scp()
    study = small_us("rle")
    report = send_study("127.0.0.1", port, "RECORDER", "SIM", study)
    assert report.all_succeeded
    assert_arrived_intact(study, scp.received)
    assert scp.received[0].dataset.NumberOfFrames == 4


def test_compressed_study_falls_back_to_native_when_the_peer_declines(
    start_scp: Callable[..., tuple[RecordingScp, int]],
) -> None:
    scp, port = start_scp(syntaxes=[ImplicitVRLittleEndian])
    study = small_ct("rle", slices=3)
    report = send_study("127.0.0.1", port, "RECORDER", "SIM", study)
    assert report.all_succeeded
    assert {r.transfer_syntax for r in scp.received} == {ImplicitVRLittleEndian}
    assert report.accepted_syntaxes[CT_IMAGE_STORAGE] == (ImplicitVRLittleEndian,)
    assert_arrived_intact(study, scp.received)


def test_each_instance_status_is_reported(start_scp: Callable[..., tuple[RecordingScp, int]]) -> None:
    scp, port = start_scp(statuses={3: 0xA700, 4: 0xB000})
    report = send_study("127.0.0.1", port, "RECORDER", "SIM", small_ct())
    assert [(r.outcome, r.status) for r in report.results] == [
        (Outcome.SUCCESS, 0x0000), (Outcome.SUCCESS, 0x0000), (Outcome.FAILURE, 0xA700),
        (Outcome.WARNING, 0xB000), (Outcome.SUCCESS, 0x0000)]
    assert len(scp.received) == 5  # a failed instance does not stop the rest


def test_sop_class_the_peer_does_not_support_is_not_sent(start_scp: Callable[..., tuple[RecordingScp, int]]) -> None:
    scp, port = start_scp()
    study = small_ct(slices=1)
    alien = copy.deepcopy(study.instances[0])
    alien.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage, not offered by this SCP
    mixed = Study(study.kind, study.encounter, (alien, *study.instances))
    report = send_study("127.0.0.1", port, "RECORDER", "SIM", mixed)
    assert [r.outcome for r in report.results] == [Outcome.NOT_SENT, Outcome.SUCCESS]
    assert len(scp.received) == 1


def test_refused_connection_raises_typed_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DicomConnectionError) as caught:
        send_study("127.0.0.1", port, "NOBODY", "SIM", small_ct(slices=1), timeout=5)
    assert caught.value.port == port


def test_rejected_association_raises_typed_error(start_scp: Callable[..., tuple[RecordingScp, int]]) -> None:
    _, port = start_scp(require_calling_aet=["ONLY_THIS"])
    with pytest.raises(AssociationRejectedError) as caught:
        send_study("127.0.0.1", port, "RECORDER", "SIM", small_ct(slices=1))
    # PS3.8 9.3.4: rejected-permanent, by the service user, calling AE title not recognised.
    assert (caught.value.result, caught.value.source, caught.value.reason) == (1, 1, 3)


def test_abort_mid_study_raises_with_the_partial_report(start_scp: Callable[..., tuple[RecordingScp, int]]) -> None:
    _, port = start_scp(abort_on=3)
    with pytest.raises(AssociationAbortedError) as caught:
        send_study("127.0.0.1", port, "RECORDER", "SIM", small_ct(), timeout=10)
    report = caught.value.report
    assert report is not None
    assert [r.outcome for r in report.results] == [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.FAILURE]
    assert report.results[2].status is None


@pytest.mark.parametrize("nodelay", [True, False])
def test_tcp_nodelay_is_set_on_the_scu_socket(
    start_scp: Callable[..., tuple[RecordingScp, int]], nodelay: bool
) -> None:
    scp, port = start_scp()
    report = send_study("127.0.0.1", port, "RECORDER", "SIM", small_ct(slices=1), tcp_nodelay=nodelay)
    assert scp.peer_nodelay == [nodelay]  # observed from outside send_study, on the live socket
    assert report.tcp_nodelay is nodelay


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scp.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "scp.pem", directory / "scp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_association_verifies_the_peer(
    start_scp: Callable[..., tuple[RecordingScp, int]], tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    scp, port = start_scp(ssl_context=server)
    study = small_ct(slices=2)
    report = send_study("127.0.0.1", port, "RECORDER", "SIM", study,
                        tls=ssl.create_default_context(cafile=str(cert)))
    assert report.all_succeeded and report.tcp_nodelay
    assert_arrived_intact(study, scp.received)
    untrusted = ssl.create_default_context()  # system CAs only: the self-signed peer must be refused
    with pytest.raises(DicomConnectionError):
        send_study("127.0.0.1", port, "RECORDER", "SIM", study, tls=untrusted, timeout=5)


def _cli(*argv: str) -> argparse.Namespace:
    top = argparse.ArgumentParser(prog="telemed-sim")
    add_parser(top.add_subparsers(dest="command", required=True))
    return top.parse_args(["modality", *argv])


def test_cli_prints_one_line_per_instance_and_a_summary(
    start_scp: Callable[..., tuple[RecordingScp, int]], tmp_path: Path
) -> None:
    scp, port = start_scp(statuses={2: 0xC000})
    out = io.StringIO()
    code = main(_cli("--host", "127.0.0.1", "--port", str(port), "--aet", "RECORDER", "--study", "ct",
                     "--slices", "3", "--rows", "32", "--columns", "32", "--transfer-syntax", "rle",
                     "--patient-name", "张伟", "--seed", "4", "--save-dir", str(tmp_path)), out=out)
    lines = out.getvalue().splitlines()
    assert code == 1  # one instance failed
    assert lines[0].startswith("generated ct study: 3 instance(s)")
    assert [line.split()[1] for line in lines[1:4]] == ["success", "failure", "success"]
    assert "0xC000" in lines[2]
    assert lines[4].startswith("sent 3 instance(s) to RECORDER@127.0.0.1:") and "instances/s" in lines[4]
    assert "张" not in out.getvalue()  # patient names stay out of console output
    assert str(scp.received[0].dataset.PatientName) == "Zhang^Wei=张^伟"
    assert len(list(tmp_path.glob("CT.*.dcm"))) == 3


# --- dcmtk storescp: an independent implementation of the other side -------------------------------------


@dataclass
class Storescp:
    port: int
    directory: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Callable[..., Storescp]]:
    binary = shutil.which("storescp")
    assert binary is not None, "dcmtk's storescp must be on PATH (apt package dcmtk, installed by make setup)"
    processes: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> Storescp:
        port = _free_port()
        directory = tmp_path / f"storescp-{port}"
        directory.mkdir()
        process = subprocess.Popen([binary, "-aet", "STORESCP", "+xa", "-od", str(directory), *options, str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return Storescp(port, directory)
            except OSError:
                assert process.poll() is None, "storescp exited at start-up"
                time.sleep(0.05)
        raise AssertionError("storescp did not start listening")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(("make", "syntax"), [(small_ct, "rle"), (small_us, "deflate"), (small_ct, "implicit")])
def test_dcmtk_storescp_stores_every_instance_intact(
    storescp: Callable[..., Storescp], make: Callable[[str], Study], syntax: str
) -> None:
    scp = storescp()
    study = make(syntax)
    report = send_study("127.0.0.1", scp.port, "STORESCP", "SIM", study)
    assert report.all_succeeded and report.echo_status == 0
    stored = {str(ds.SOPInstanceUID): ds for ds in (dcmread(path) for path in scp.directory.iterdir())}
    assert set(stored) == {str(ds.SOPInstanceUID) for ds in study.instances}
    for ds, result in zip(study.instances, report.results, strict=True):
        kept = stored[str(ds.SOPInstanceUID)]
        # storescp picks Explicit VR from the native context, so an Implicit VR instance is converted.
        assert kept.file_meta.TransferSyntaxUID == result.transfer_syntax_uid
        if syntax != "implicit":
            assert result.transfer_syntax_uid == SYNTAXES_BY_NAME[syntax].uid
        assert np.array_equal(kept.pixel_array, ds.pixel_array)
        assert kept.PatientName == ds.PatientName and kept.StudyInstanceUID == ds.StudyInstanceUID


def test_dcmtk_abort_after_a_store_raises_with_the_partial_report(storescp: Callable[..., Storescp]) -> None:
    # (storescp --refuse is not used: it drops the connection right after A-ASSOCIATE-RJ and pynetdicom
    # then sometimes sees only the closed connection, so the rejection test uses the pynetdicom SCP.)
    aborting = storescp("--abort-after")
    with pytest.raises(AssociationAbortedError) as caught:
        send_study("127.0.0.1", aborting.port, "STORESCP", "SIM", small_ct(slices=2), timeout=10)
    assert caught.value.report is not None
    assert caught.value.report.results[0].outcome is Outcome.FAILURE
