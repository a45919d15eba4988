"""C-STORE responses encoded by hand instead of through pydicom (the SCP's hottest fixed cost).

pynetdicom turns every response into a pydicom Dataset and encodes it twice (once for the group length, once
to send it): about a fifth of the SCP's CPU per stored instance. A C-STORE-RSP with a plain status is six
elements behind their group length (PS3.7 9.3.1.2, Table 9.3-2) in Implicit VR Little Endian (PS3.7 6.3.1),
so `install` makes an association's DIMSE provider write those bytes itself. Anything else (a status with
ErrorComment or OffendingElement, a peer PDU limit it does not fit, a bound EVT_DIMSE_SENT handler) goes
through pynetdicom unchanged. The unit tests check the bytes equal pynetdicom's own encoding.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

_C_STORE_RSP: Final = 0x8001
_NO_DATASET: Final = 0x0101
# A P-DATA-TF PDV item is the context id and the message control header besides the fragment (PS3.8 9.3.5.1).
_PDV_OVERHEAD: Final = 6
# Message control header: a command fragment (bit 0) that is the last one (bit 1) (PS3.8 E.2).
_LAST_COMMAND_FRAGMENT: Final = b"\x03"


def _element(element: int, value: bytes) -> bytes:
    """One group-0000 element, Implicit VR Little Endian: tag, 32-bit length, value (PS3.5 7.1.3)."""
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw  # UI values are padded to even length with NUL (PS3.5 6.2)


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def encode_store_rsp(*, message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int) -> bytes:
    """The encoded command set of a C-STORE-RSP without a dataset, ErrorComment or OffendingElement."""
    body = b"".join((
        _element(0x0002, _uid(sop_class_uid)),
        _element(0x0100, _us(_C_STORE_RSP)),
        _element(0x0120, _us(message_id)),
        _element(0x0800, _us(_NO_DATASET)),
        _element(0x0900, _us(status)),
        _element(0x1000, _uid(sop_instance_uid)),
    ))
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _plain_store_rsp(primitive: Any) -> bytes | None:
    """The command bytes for `primitive` if the fast path can send it, else None."""
    if not isinstance(primitive, C_STORE) or primitive.MessageIDBeingRespondedTo is None:
        return None
    if primitive.ErrorComment is not None or primitive.OffendingElement is not None or primitive.Status is None:
        return None
    if primitive.AffectedSOPClassUID is None or primitive.AffectedSOPInstanceUID is None:
        return None
    return encode_store_rsp(message_id=int(primitive.MessageIDBeingRespondedTo),
                            sop_class_uid=str(primitive.AffectedSOPClassUID),
                            sop_instance_uid=str(primitive.AffectedSOPInstanceUID), status=int(primitive.Status))


def install(assoc: Association) -> None:
    """Send this association's plain C-STORE responses through `encode_store_rsp` (call before it starts)."""
    dimse = assoc.dimse
    send_msg = dimse.send_msg

    def fast_send_msg(primitive: Any, context_id: int) -> None:
        command = _plain_store_rsp(primitive)
        limit = dimse.maximum_pdu_size
        if command is None or (limit and len(command) + _PDV_OVERHEAD > limit) \
                or assoc.get_handlers(evt.EVT_DIMSE_SENT):
            send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, _LAST_COMMAND_FRAGMENT + command))
        dimse.dul.send_pdu(pdata)

    dimse.send_msg = fast_send_msg  # type: ignore[method-assign]
