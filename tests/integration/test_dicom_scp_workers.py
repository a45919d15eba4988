"""The SCP with its associations in worker processes (edge.dicom.workers): the same behaviour as in process,
with the store, the index and the metrics in the server's process."""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from devices.modality.errors import AssociationRejectedError
from devices.modality.report import SendReport
from devices.modality.scu import send_study
from devices.modality.studies import Study
from edge.dicom import status
from edge.dicom.scp import DicomServer, ScpConfig
from edge.dicom.store import InstanceStore, StoreLimits
from edge.metrics import Registry
from tests.integration.test_dicom_scp import ALLOWED, _find, _self_signed
from tests.unit.edge.test_dicom_support import ct_study, dataset_bytes, part10

pytestmark = pytest.mark.integration

WORKERS = 2


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., DicomServer]]:
    servers: list[DicomServer] = []

    def make(registry: Registry | None = None, **config: object) -> DicomServer:
        store = InstanceStore(tmp_path / f"store{len(servers)}", limits=StoreLimits(min_free_bytes=0))
        options: dict[str, object] = {"ae_title": "EDGE", "port": 0, "allowed_calling_aets": ALLOWED,
                                      "workers": WORKERS, **config}
        server = DicomServer(store, ScpConfig(**options), registry=registry)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        server.store.close()


def _send_in_parallel(server: DicomServer, studies: list[Study]) -> list[SendReport]:
    host, port = server.address
    reports: list[SendReport] = []
    threads = [threading.Thread(target=lambda s=s: reports.append(send_study(host, port, "EDGE", "MODALITY", s)))
               for s in studies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return reports


def test_studies_through_workers_are_stored_counted_found_and_logged(
        make_server: Callable[..., DicomServer], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # before the start: workers log at the server's level
    registry = Registry()
    server = make_server(registry)
    studies = [ct_study(slices=3, seed=seed) for seed in (21, 22)]
    reports = _send_in_parallel(server, studies)
    assert len(reports) == 2 and all(r.all_succeeded and r.tcp_nodelay for r in reports)
    for study in studies:
        for ds in study.instances:
            held = server.store.index.instance(str(ds.SOPInstanceUID))
            assert held is not None and dataset_bytes(server.store.read(held)) == dataset_bytes(part10(ds))

    assert _send_in_parallel(server, studies[:1])[0].all_succeeded  # duplicates: accepted, stored once
    assert len(server.store.index.all_paths()) == 6
    metrics = registry.render()
    assert 'telemed_dicom_store_requests_total{status="success"} 9' in metrics
    _wait_for(lambda: 'telemed_dicom_associations_total{result="accepted"} 3' in registry.render())
    _wait_for(lambda: any("dicom.scp.association_accepted" in r.getMessage() for r in caplog.records))

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.NumberOfStudyRelatedInstances = ""
    found = _find(server, query)
    assert [code for code, _ in found] == [status.PENDING, status.PENDING, status.SUCCESS]
    assert {str(ds.StudyInstanceUID) for _, ds in found if ds is not None} == \
        {s.study_instance_uid for s in studies}


def test_a_disallowed_calling_ae_is_rejected_and_counted(make_server: Callable[..., DicomServer]) -> None:
    registry = Registry()
    server = make_server(registry)
    host, port = server.address
    with pytest.raises(AssociationRejectedError) as caught:
        send_study(host, port, "EDGE", "INTRUDER", ct_study(slices=1))
    assert (caught.value.result, caught.value.source, caught.value.reason) == (1, 1, 3)
    _wait_for(lambda: 'telemed_dicom_associations_total{result="rejected"} 1' in registry.render())


def test_a_dead_worker_is_replaced(make_server: Callable[..., DicomServer]) -> None:
    server = make_server()
    pool = server._pool
    assert pool is not None
    victim = pool._workers[0]
    os.kill(victim.process.pid, signal.SIGKILL)
    _wait_for(lambda: all(w is not victim and w.ready.is_set() for w in pool._workers))
    reports = _send_in_parallel(server, [ct_study(slices=2, seed=s) for s in (31, 32, 33)])
    assert len(reports) == 3 and all(r.all_succeeded for r in reports)


def test_tls_through_workers(make_server: Callable[..., DicomServer], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = make_server(tls_certfile=cert, tls_keyfile=key)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    client.check_hostname = False
    host, port = server.address
    assert send_study(host, port, "EDGE", "MODALITY", ct_study(slices=1), tls=client).all_succeeded


def test_stopping_ends_the_worker_processes(make_server: Callable[..., DicomServer]) -> None:
    server = make_server()
    assert server._pool is not None
    processes = [w.process for w in server._pool._workers]
    assert len(processes) == WORKERS and all(p.is_alive() for p in processes)
    server.stop()
    assert not any(p.is_alive() for p in processes)
    with pytest.raises(RuntimeError):
        _ = server.address
