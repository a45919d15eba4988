"""Record Access Control Point 0x2A52 (GLS 1.0.1 and PLXS 1.0.1; GATT Supplement, RACP).

A collector writes a request (Op Code, Operator, Operand) to pull stored records; the server answers by
indication with either Number of Stored Records (count, UINT16) or a Response Code (request op code,
response code value). Only the sequence-number filter (Filter Type 0x01) is supported, which is the one
GLS mandates; a request that filters on user facing time (0x02) is rejected as unsupported.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from devices.gatt.errors import GattDecodeError, GattEncodeError
from devices.gatt.fields import UINT8, UINT16
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec
from devices.gatt.reading import Reading
from devices.gatt.uuids import RECORD_ACCESS_CONTROL_POINT as RACP


class RacpOpCode(enum.IntEnum):
    """RACP Op Code values."""

    REPORT_STORED_RECORDS = 0x01
    DELETE_STORED_RECORDS = 0x02
    ABORT_OPERATION = 0x03
    REPORT_NUMBER_OF_STORED_RECORDS = 0x04
    NUMBER_OF_STORED_RECORDS_RESPONSE = 0x05
    RESPONSE_CODE = 0x06


class RacpOperator(enum.IntEnum):
    """RACP Operator values."""

    NULL = 0x00
    ALL_RECORDS = 0x01
    LESS_THAN_OR_EQUAL = 0x02
    GREATER_THAN_OR_EQUAL = 0x03
    WITHIN_RANGE = 0x04
    FIRST_RECORD = 0x05
    LAST_RECORD = 0x06


class RacpResponseCode(enum.IntEnum):
    """RACP Response Code values (the operand of a Response Code indication)."""

    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_OPERATOR = 0x03
    OPERATOR_NOT_SUPPORTED = 0x04
    INVALID_OPERAND = 0x05
    NO_RECORDS_FOUND = 0x06
    ABORT_UNSUCCESSFUL = 0x07
    PROCEDURE_NOT_COMPLETED = 0x08
    OPERAND_NOT_SUPPORTED = 0x09


FILTER_SEQUENCE_NUMBER: Final = 0x01
FILTER_USER_FACING_TIME: Final = 0x02

# Requests whose operator selects records, and how many UINT16 sequence numbers each operator takes.
_SELECTING: Final = frozenset({
    RacpOpCode.REPORT_STORED_RECORDS, RacpOpCode.DELETE_STORED_RECORDS, RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS,
})
_OPERAND_COUNT: Final = {
    RacpOperator.ALL_RECORDS: 0,
    RacpOperator.LESS_THAN_OR_EQUAL: 1,
    RacpOperator.GREATER_THAN_OR_EQUAL: 1,
    RacpOperator.WITHIN_RANGE: 2,
    RacpOperator.FIRST_RECORD: 0,
    RacpOperator.LAST_RECORD: 0,
}

_HEAD: Final = (Field("op_code", UINT8), Field("operator", UINT8))
_NO_OPERAND: Final = Layout(RACP, _HEAD, flags=False)
_ONE_BOUND: Final = Layout(RACP, (*_HEAD, Field("filter", UINT8), Field("bound", UINT16)), flags=False)
_RANGE: Final = Layout(
    RACP, (*_HEAD, Field("filter", UINT8), Field("minimum", UINT16), Field("maximum", UINT16)), flags=False,
)
_COUNT: Final = Layout(RACP, (*_HEAD, Field("count", UINT16)), flags=False)
_RESPONSE: Final = Layout(RACP, (*_HEAD, Field("request_op_code", UINT8), Field("response_code", UINT8)), flags=False)
_BY_OPERAND_COUNT: Final = {0: _NO_OPERAND, 1: _ONE_BOUND, 2: _RANGE}


@dataclass(frozen=True, slots=True)
class RacpRequest:
    """A request written by the collector. Sequence-number bounds: `minimum` for >=, `maximum` for <=, both
    for a range; none for all/first/last records and for abort (operator NULL)."""

    op_code: RacpOpCode
    operator: RacpOperator = RacpOperator.NULL
    minimum: int | None = None
    maximum: int | None = None

    @classmethod
    def report_all(cls) -> RacpRequest:
        """Report all stored records."""
        return cls(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def report_from(cls, sequence_number: int) -> RacpRequest:
        """Report the records whose sequence number is >= `sequence_number` (resume after the last seen)."""
        return cls(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL, minimum=sequence_number)

    @classmethod
    def count(cls, from_sequence: int | None = None) -> RacpRequest:
        """Report the number of stored records (all, or those >= `from_sequence`)."""
        if from_sequence is None:
            return cls(RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS, RacpOperator.ALL_RECORDS)
        return cls(
            RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL, minimum=from_sequence,
        )

    @classmethod
    def abort(cls) -> RacpRequest:
        """Abort the procedure in progress."""
        return cls(RacpOpCode.ABORT_OPERATION, RacpOperator.NULL)


@dataclass(frozen=True, slots=True)
class RacpNumberOfRecords:
    """The server's answer to REPORT_NUMBER_OF_STORED_RECORDS."""

    count: int


@dataclass(frozen=True, slots=True)
class RacpResponse:
    """The server's Response Code indication that ends a procedure: `code` is a RacpResponseCode value
    (kept as int, since a server may answer with a code newer than our table)."""

    request_op_code: int
    code: int

    @property
    def succeeded(self) -> bool:
        """Whether the procedure completed successfully."""
        return self.code == RacpResponseCode.SUCCESS


RacpMessage = RacpRequest | RacpNumberOfRecords | RacpResponse


def _error(offset: int, reason: str) -> GattDecodeError:
    return GattDecodeError(RACP, offset, reason)


def parse(payload: bytes) -> RacpMessage:
    """A request or response written to / indicated on the RACP; raises GattDecodeError if malformed."""
    if len(payload) < 2:
        raise _error(len(payload), "empty payload" if not payload else "truncated: no operator")
    op_code, operator = payload[0], payload[1]
    if op_code == RacpOpCode.RESPONSE_CODE:
        v = _unpack_null_operator(_RESPONSE, payload)
        return RacpResponse(v["request_op_code"], v["response_code"])
    if op_code == RacpOpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        return RacpNumberOfRecords(_unpack_null_operator(_COUNT, payload)["count"])
    if op_code == RacpOpCode.ABORT_OPERATION:
        _unpack_null_operator(_NO_OPERAND, payload)
        return RacpRequest.abort()
    if op_code not in _SELECTING:
        raise _error(0, f"unknown op code 0x{op_code:02X}")
    if operator not in _OPERAND_COUNT:
        raise _error(1, f"invalid operator 0x{operator:02X} for op code 0x{op_code:02X}")
    operator_enum = RacpOperator(operator)
    operands = _OPERAND_COUNT[operator_enum]
    _, v = _BY_OPERAND_COUNT[operands].unpack(payload)
    if operands and v["filter"] != FILTER_SEQUENCE_NUMBER:
        raise _error(2, f"filter type 0x{v['filter']:02X} not supported (only sequence number 0x01)")
    minimum = v.get("minimum", v.get("bound") if operator_enum == RacpOperator.GREATER_THAN_OR_EQUAL else None)
    maximum = v.get("maximum", v.get("bound") if operator_enum == RacpOperator.LESS_THAN_OR_EQUAL else None)
    return RacpRequest(RacpOpCode(op_code), operator_enum, minimum, maximum)


def _unpack_null_operator(layout: Layout, payload: bytes) -> dict[str, int]:
    if payload[1] != RacpOperator.NULL:
        raise _error(1, f"operator must be NULL (0x00) for op code 0x{payload[0]:02X}, got 0x{payload[1]:02X}")
    return layout.unpack(payload)[1]


def encode(m: RacpMessage) -> bytes:
    """The RACP bytes for a request or a response; GattEncodeError for an inconsistent request."""
    if isinstance(m, RacpResponse):
        return _RESPONSE.pack(0, {
            "op_code": RacpOpCode.RESPONSE_CODE, "operator": 0, "request_op_code": m.request_op_code,
            "response_code": m.code,
        })
    if isinstance(m, RacpNumberOfRecords):
        return _COUNT.pack(0, {
            "op_code": RacpOpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, "operator": 0, "count": m.count,
        })
    return _encode_request(m)


def _encode_request(m: RacpRequest) -> bytes:
    if m.op_code == RacpOpCode.ABORT_OPERATION:
        _require(
            m.operator == RacpOperator.NULL and m.minimum is None and m.maximum is None,
            "abort takes operator NULL and no operand",
        )
        return _NO_OPERAND.pack(0, {"op_code": m.op_code, "operator": m.operator})
    _require(m.op_code in _SELECTING, f"op code {m.op_code!r} is not a request")
    _require(m.operator in _OPERAND_COUNT, f"operator {m.operator!r} does not select records")
    wants_min = m.operator in (RacpOperator.GREATER_THAN_OR_EQUAL, RacpOperator.WITHIN_RANGE)
    wants_max = m.operator in (RacpOperator.LESS_THAN_OR_EQUAL, RacpOperator.WITHIN_RANGE)
    expected = {(True, True): "minimum and maximum", (True, False): "a minimum", (False, True): "a maximum"}
    _require(
        (m.minimum is not None) == wants_min and (m.maximum is not None) == wants_max,
        f"operator {m.operator.name} takes {expected.get((wants_min, wants_max), 'no operand')}",
    )
    if wants_min and wants_max:
        assert m.minimum is not None and m.maximum is not None
        _require(m.minimum <= m.maximum, f"range minimum {m.minimum} > maximum {m.maximum}")
    layout = _BY_OPERAND_COUNT[_OPERAND_COUNT[m.operator]]
    bound = m.minimum if m.operator == RacpOperator.GREATER_THAN_OR_EQUAL else m.maximum
    return layout.pack(0, {
        "op_code": m.op_code, "operator": m.operator, "filter": FILTER_SEQUENCE_NUMBER,
        "bound": bound, "minimum": m.minimum, "maximum": m.maximum,
    })


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise GattEncodeError(RACP, reason)


def readings(_: RacpMessage) -> list[Reading]:
    """A control-point message carries no readings (the records arrive on 0x2A18 / 0x2A5E)."""
    return []


CODEC: Final[CharacteristicCodec[RacpMessage]] = characteristic_codec(
    RACP, "Record Access Control Point", (RacpRequest, RacpNumberOfRecords, RacpResponse),
    parse=parse, encode=encode, readings=readings,
)
