"""The hand-encoded C-STORE-RSP is byte for byte what pynetdicom itself would send."""

from __future__ import annotations

import pytest
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from edge.dicom.fastrsp import _plain_store_rsp, encode_store_rsp

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _response(message_id: int, sop_instance_uid: str, status: int) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = CT_IMAGE_STORAGE
    rsp.AffectedSOPInstanceUID = sop_instance_uid
    rsp.Status = status
    return rsp


def _pynetdicom_bytes(rsp: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    [pdata] = list(message.encode_msg(1, 16_384))
    [(context_id, pdv)] = pdata.presentation_data_value_list
    assert context_id == 1 and pdv[:1] == b"\x03"
    return bytes(pdv[1:])


@pytest.mark.parametrize(("message_id", "uid", "status"), [
    (1, "1.2.826.0.1.3680043.8.498.1", 0x0000),  # odd length: NUL padded
    (65535, "1.2.826.0.1.3680043.8.498.12", 0xA700),  # even length
    (7, "2.25.1", 0xC000),
    (300, "1.2.3.4", 0x0122),
])
def test_same_bytes_as_pynetdicom(message_id: int, uid: str, status: int) -> None:
    rsp = _response(message_id, uid, status)
    ours = encode_store_rsp(message_id=message_id, sop_class_uid=CT_IMAGE_STORAGE, sop_instance_uid=uid,
                            status=status)
    assert ours == _pynetdicom_bytes(rsp)
    assert _plain_store_rsp(rsp) == ours


def test_responses_with_more_than_a_status_go_through_pynetdicom() -> None:
    with_comment = _response(1, "1.2.3.4", 0xC000)
    with_comment.ErrorComment = "cannot understand"  # type: ignore[assignment]
    request = C_STORE()
    request.MessageID = 1
    assert _plain_store_rsp(with_comment) is None
    assert _plain_store_rsp(request) is None
    assert _plain_store_rsp(object()) is None
