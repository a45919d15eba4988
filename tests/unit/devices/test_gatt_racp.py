"""Record Access Control Point 0x2A52: the requests a collector sends and the indications it gets back."""

from __future__ import annotations

import pytest

from devices.gatt import (
    RacpNumberOfRecords,
    RacpOpCode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    decode,
    encode,
    parse,
)


@pytest.mark.parametrize(
    ("request_", "wire"),
    [
        # GLS 1.0.1 RACP procedures: Op Code, Operator, [Filter Type 0x01 = sequence number, UINT16 ...].
        (RacpRequest.report_all(), "0101"),
        (RacpRequest.report_from(12), "0103010C00"),
        (RacpRequest.report_from(0x1234), "0103013412"),
        (RacpRequest.count(), "0401"),
        (RacpRequest.count(from_sequence=5), "0403010500"),
        (RacpRequest.abort(), "0300"),
        (RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.WITHIN_RANGE, 12, 412), "0104010C009C01"),
        (RacpRequest(RacpOpCode.DELETE_STORED_RECORDS, RacpOperator.LESS_THAN_OR_EQUAL, maximum=41), "0202012900"),
        (RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.LAST_RECORD), "0106"),
    ],
)
def test_requests_have_the_spec_layout(request_: RacpRequest, wire: str) -> None:
    assert encode(request_) == bytes.fromhex(wire)
    assert parse(0x2A52, bytes.fromhex(wire)) == request_


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        # Nordic RecordAccessControlPointDataCallbackTest vectors.
        ("06000101", RacpResponse(RacpOpCode.REPORT_STORED_RECORDS, RacpResponseCode.SUCCESS)),
        ("06000C02", RacpResponse(12, RacpResponseCode.OP_CODE_NOT_SUPPORTED)),
        ("06000103", RacpResponse(1, RacpResponseCode.INVALID_OPERATOR)),
        ("06000106", RacpResponse(1, RacpResponseCode.NO_RECORDS_FOUND)),
        ("06000307", RacpResponse(RacpOpCode.ABORT_OPERATION, RacpResponseCode.ABORT_UNSUCCESSFUL)),
        ("0600010A", RacpResponse(1, 10)),  # a code newer than our table is kept, not rejected
        ("05000201", RacpNumberOfRecords(258)),
    ],
)
def test_responses_parse(wire: str, message: RacpResponse | RacpNumberOfRecords) -> None:
    assert parse("2A52", bytes.fromhex(wire)) == message
    assert encode(message) == bytes.fromhex(wire)
    assert decode(0x2A52, bytes.fromhex(wire)) == []  # the records arrive on 0x2A18, not here


def test_only_success_succeeds() -> None:
    assert RacpResponse(1, RacpResponseCode.SUCCESS).succeeded
    assert not RacpResponse(1, RacpResponseCode.NO_RECORDS_FOUND).succeeded
    assert not RacpResponse(1, 10).succeeded
