"""The network side of the modality: a pynetdicom Storage SCU that verifies the peer and sends a study.

Library failures become our typed errors (`devices.modality.errors`); per-instance DIMSE statuses
are reported, never raised, since a PACS refusing one image must not hide the fate of the others.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE

from devices.modality.dataset_modules import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from devices.modality.errors import (
    AssociationAbortedError,
    AssociationRejectedError,
    DicomConnectionError,
    EchoFailedError,
)
from devices.modality.negotiation import VERIFICATION_SOP_CLASS, WirePlan, plan_wire_syntax, propose_contexts
from devices.modality.report import InstanceResult, Outcome, SendReport, classify_status
from devices.modality.studies import Study
from devices.modality.syntaxes import to_native

_log = logging.getLogger(__name__)

ProgressCallback = Callable[[InstanceResult, int], None]
"""Called after each instance with its result and the number of instances in the study."""

SUCCESS = 0x0000


def _no_progress(result: InstanceResult, total: int) -> None:
    """The default progress callback: nothing to report to."""


@dataclass
class _Connection:
    """What the association's event handlers observed (written on the DUL thread, read after)."""

    tcp_nodelay: bool
    opened: bool = False
    nodelay_read_back: bool = False
    bytes_sent: int = 0
    handlers: list[evt.EventHandlerType] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.handlers = [(evt.EVT_CONN_OPEN, self._on_open), (evt.EVT_DATA_SENT, self._on_data_sent)]

    def _on_open(self, event: evt.Event) -> None:
        # pynetdicom leaves Nagle's algorithm on; a C-STORE goes out as a command PDU then data PDUs, and
        # on loopback Nagle plus the peer's delayed ACK stalls each request by ~40 ms. EVT_CONN_OPEN fires
        # on the DUL thread right after connect() and before the A-ASSOCIATE-RQ is written.
        self.opened = True
        sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
        if sock is None:
            return
        if self.tcp_nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.nodelay_read_back = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def _on_data_sent(self, event: evt.Event) -> None:
        self.bytes_sent += len(event.data)


def _application_entity(calling_aet: str, study: Study, timeout: float) -> AE:
    ae = AE(ae_title=calling_aet)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    pairs = [(UID(ds.SOPClassUID), UID(ds.file_meta.TransferSyntaxUID)) for ds in study.instances]
    for context in propose_contexts(pairs):
        ae.add_requested_context(context.abstract_syntax, list(context.transfer_syntaxes))
    return ae


def _raise_for_failed_association(assoc: Association, connection: _Connection, host: str, port: int) -> None:
    if assoc.is_rejected:
        reply = assoc.acceptor.primitive
        if isinstance(reply, A_ASSOCIATE):
            raise AssociationRejectedError(
                int(reply.result or 0), int(reply.result_source or 0), int(reply.diagnostic or 0),
                f"{reply.result_str}, {reply.source_str}: {reply.reason_str}",
            )
        raise AssociationRejectedError(0, 0, 0, "no reason given")
    if not connection.opened:
        raise DicomConnectionError(host, port)
    raise AssociationAbortedError("association aborted or timed out during negotiation")


def _accepted_syntaxes(assoc: Association) -> dict[UID, frozenset[UID]]:
    accepted: dict[UID, set[UID]] = {}
    for context in assoc.accepted_contexts:
        sop_class = UID(str(context.abstract_syntax))
        accepted.setdefault(sop_class, set()).update(UID(ts) for ts in context.transfer_syntax)
    return {sop_class: frozenset(syntaxes) for sop_class, syntaxes in accepted.items()}


def _verify(assoc: Association, accepted: dict[UID, frozenset[UID]]) -> int | None:
    """C-ECHO first (PS3.4 A.4) so a misconfigured peer fails fast; None if Verification was declined."""
    if VERIFICATION_SOP_CLASS not in accepted:
        _log.warning("modality.echo_skipped", extra={"reason": "verification not accepted"})
        return None
    reply = assoc.send_c_echo()
    if "Status" not in reply:
        raise AssociationAbortedError("no answer to C-ECHO: association aborted or timed out")
    status = int(reply.Status)
    if status != SUCCESS:
        raise EchoFailedError(status)
    return status


def _store(
    assoc: Association, ds: Dataset, index: int, plan: WirePlan | None, connection: _Connection
) -> tuple[InstanceResult, bool]:
    """Send one instance; returns its result and whether the association is still usable."""
    sop_class, sop_instance = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    if plan is None:
        result = InstanceResult(index, sop_class, sop_instance, "", Outcome.NOT_SENT, None,
                                "no presentation context accepted for this SOP class", 0, 0.0)
        return result, True
    start, before = time.perf_counter(), connection.bytes_sent
    payload = to_native(ds) if plan.decode else ds
    try:
        reply = assoc.send_c_store(payload, msg_id=index % 0xFFFF + 1, priority=0)
    except RuntimeError:  # the association dropped between two requests
        reply = Dataset()
    except ValueError as exc:  # pydicom could not encode it in the negotiated syntax
        result = InstanceResult(index, sop_class, sop_instance, str(plan.syntax), Outcome.NOT_SENT, None,
                                str(exc), 0, time.perf_counter() - start)
        return result, True
    seconds = time.perf_counter() - start
    sent = connection.bytes_sent - before
    if "Status" not in reply:
        return InstanceResult(index, sop_class, sop_instance, str(plan.syntax), Outcome.FAILURE, None,
                              "no response: association aborted or timed out", sent, seconds), False
    status = int(reply.Status)
    comment = str(reply.ErrorComment) if "ErrorComment" in reply else None
    return InstanceResult(index, sop_class, sop_instance, str(plan.syntax), classify_status(status), status,
                          comment, sent, seconds), True


def send_study(
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    study: Study,
    *,
    tls: ssl.SSLContext | None = None,
    on_progress: ProgressCallback = _no_progress,
    timeout: float = 30.0,
    tcp_nodelay: bool = True,
) -> SendReport:
    """C-ECHO then C-STORE every instance of `study` over one association; report each instance's status.

    Raises DicomConnectionError (refused, unreachable, TLS handshake), AssociationRejectedError,
    AssociationAbortedError (carrying the partial report) and EchoFailedError.
    """
    ae = _application_entity(calling_aet, study, timeout)
    connection = _Connection(tcp_nodelay=tcp_nodelay)
    started = time.perf_counter()
    assoc = ae.associate(
        host, port, ae_title=called_aet, tls_args=(tls, host) if tls else None, evt_handlers=connection.handlers
    )
    if not assoc.is_established:
        _raise_for_failed_association(assoc, connection, host, port)
    _log.info("modality.associated", extra={"peer": f"{host}:{port}", "called_aet": called_aet,
                                             "study_uid": str(study.study_instance_uid)})
    accepted = _accepted_syntaxes(assoc)
    results: list[InstanceResult] = []

    def report() -> SendReport:
        return SendReport(
            host=host, port=port, called_aet=called_aet, calling_aet=calling_aet, echo_status=echo_status,
            accepted_syntaxes={str(k): tuple(sorted(str(ts) for ts in v)) for k, v in accepted.items()},
            results=tuple(results), seconds=time.perf_counter() - started, tcp_nodelay=connection.nodelay_read_back,
        )

    echo_status: int | None = None
    try:
        echo_status = _verify(assoc, accepted)
        total = len(study.instances)
        for index, ds in enumerate(study.instances):
            plan = plan_wire_syntax(UID(ds.SOPClassUID), UID(ds.file_meta.TransferSyntaxUID), accepted)
            result, alive = _store(assoc, ds, index, plan, connection)
            results.append(result)
            _log.info("modality.c_store", extra={
                "sop_instance_uid": result.sop_instance_uid, "status": result.status, "outcome": result.outcome.value,
                "transfer_syntax": result.transfer_syntax_uid, "bytes": result.bytes_sent})
            on_progress(result, total)
            if not alive:
                raise AssociationAbortedError(f"association lost while sending instance {index + 1} of {total}",
                                              report())
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    assoc.release()
    final = report()
    _log.info("modality.sent", extra={"instances": len(final.results), "failed": final.count(Outcome.FAILURE),
                                      "seconds": round(final.seconds, 3)})
    return final
