"""Table-driven byte layouts: a characteristic is a flags byte plus fields, each present under flag bits.

A `Layout` is written as data (field name, wire codec, flag bits that make it present) and compiled
once per flags value into one precompiled `struct.Struct`, so decoding a notification is a single
`unpack_from` plus per-field conversions, and encoding is the same table run backwards. All the
length checks (truncation, trailing bytes, repeated tails) live here, once, with exact byte offsets.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devices.gatt.errors import FieldValueError, GattDecodeError, GattEncodeError
from devices.gatt.fields import UINT8, Codec


@dataclass(frozen=True, slots=True)
class Field:
    """A field of a layout.

    Present when all `when` flag bits are set and all `unless` bits are clear (both 0: always present).
    A `repeated` field is the layout's last: one or more items filling the rest of the payload.
    """

    name: str
    codec: Codec
    when: int = 0
    unless: int = 0
    repeated: bool = False

    def present(self, flags: int) -> bool:
        """Whether the field is in a payload with these flags."""
        return flags & self.when == self.when and not flags & self.unless


@dataclass(frozen=True, slots=True)
class CompiledLayout:
    """The fixed part of a layout for one flags value, as one struct, plus the optional repeated tail."""

    packer: struct.Struct
    size: int  # bytes in the fixed part, flags included
    fields: tuple[Field, ...]
    offsets: tuple[int, ...]
    names: tuple[str, ...]
    decoders: tuple[Callable[[Any], Any] | None, ...]
    tail: Field | None
    tail_struct: struct.Struct | None


class Layout:
    """The byte layout of one characteristic value (GATT Specification Supplement), as data."""

    def __init__(
        self, characteristic: int, fields: Sequence[Field], *, flags: bool = True, value_flags: int = 0,
    ) -> None:
        """`flags`: the value starts with a UINT8 Flags field (all the health measurements do).
        `value_flags`: flag bits that carry meaning (a unit, a status) but select no field."""
        for field in fields[:-1]:
            if field.repeated:
                raise ValueError(f"repeated field {field.name!r} must be the last")
        self.characteristic = characteristic
        self.fields = tuple(fields)
        self.has_flags = int(flags)  # also the index of the first field in an unpacked tuple
        field_flags = 0
        for field in self.fields:
            field_flags |= field.when | field.unless
        self.known_flags = field_flags | value_flags
        combinations = 0x100 if flags else 1
        cache = {key: self._compile(key) for key in {value & field_flags for value in range(combinations)}}
        # Indexed by the raw flags byte. Reserved (RFU) flag bits are ignored, as the specs require of a
        # receiver; should a future revision use one to add a field, its bytes fail as trailing garbage.
        self.compiled: tuple[CompiledLayout, ...] = tuple(cache[value & field_flags] for value in range(combinations))

    def _compile(self, flags: int) -> CompiledLayout:
        fmt = "<" + UINT8.fmt * self.has_flags
        offset = UINT8.size * self.has_flags
        fields: list[Field] = []
        offsets: list[int] = []
        tail: Field | None = None
        for field in self.fields:
            if not field.present(flags):
                continue
            if field.repeated:
                tail = field
                continue
            fields.append(field)
            offsets.append(offset)
            fmt += field.codec.fmt
            offset += field.codec.size
        packer = struct.Struct(fmt)
        return CompiledLayout(
            packer=packer,
            size=packer.size,
            fields=tuple(fields),
            offsets=tuple(offsets),
            names=tuple(f.name for f in fields),
            decoders=tuple(f.codec.decode for f in fields),
            tail=tail,
            tail_struct=struct.Struct("<" + tail.codec.fmt) if tail is not None else None,
        )

    def error(self, offset: int, reason: str) -> GattDecodeError:
        """A decode error for this characteristic at `offset`."""
        return GattDecodeError(self.characteristic, offset, reason)

    def unpack(self, payload: bytes) -> tuple[int, dict[str, Any]]:
        """(flags, {field name: decoded value}) for a payload; raises GattDecodeError if malformed.

        Absent optional fields are absent from the dict; a repeated field decodes to a tuple.
        """
        size = len(payload)
        if size == 0:
            raise self.error(0, "empty payload")
        compiled = self.compiled[payload[0] if self.has_flags else 0]
        if size < compiled.size:
            raise self._truncated(compiled, size)
        items = compiled.packer.unpack_from(payload)
        values: dict[str, Any] = {}
        try:
            for name, decode, item in zip(compiled.names, compiled.decoders, items[self.has_flags:], strict=True):
                values[name] = item if decode is None else decode(item)
        except FieldValueError as exc:
            # Fields are added in layout order, so the failing one is the next: index len(values).
            raise self.error(compiled.offsets[len(values)], str(exc)) from None
        if compiled.tail is not None:
            values[compiled.tail.name] = self._unpack_tail(compiled, payload, size)
        elif size > compiled.size:
            raise self.error(compiled.size, f"{size - compiled.size} trailing byte(s) after the last field")
        return items[0] if self.has_flags else 0, values

    def _truncated(self, compiled: CompiledLayout, size: int) -> GattDecodeError:
        for field, offset in zip(compiled.fields, compiled.offsets, strict=True):
            if offset + field.codec.size > size:
                available = max(0, size - offset)
                return self.error(
                    offset,
                    f"truncated {field.codec.name} ({field.name}): needs {field.codec.size} byte(s), "
                    f"{available} left",
                )
        raise AssertionError("layout shorter than its compiled size")  # unreachable: size < compiled.size

    def _unpack_tail(self, compiled: CompiledLayout, payload: bytes, size: int) -> tuple[Any, ...]:
        tail, tail_struct = compiled.tail, compiled.tail_struct
        assert tail is not None and tail_struct is not None
        rest = size - compiled.size
        width = tail.codec.size
        if rest == 0:
            raise self.error(
                compiled.size, f"truncated {tail.codec.name} ({tail.name}): flag set but no value present"
            )
        if rest % width:
            raise self.error(
                size - rest % width, f"truncated {tail.codec.name} ({tail.name}): {rest % width} trailing byte(s)"
            )
        decode = tail.codec.decode
        view = memoryview(payload)[compiled.size:]
        if decode is None:
            return tuple(item for (item,) in tail_struct.iter_unpack(view))
        try:
            return tuple(decode(item) for (item,) in tail_struct.iter_unpack(view))
        except FieldValueError as exc:
            raise self.error(compiled.size, f"{tail.name}: {exc}") from None

    def pack(self, flags: int, values: Mapping[str, Any]) -> bytes:
        """The payload for `flags` and field values (every field the flags make present must be given).

        Raises GattEncodeError for a value its field cannot carry.
        """
        if flags & ~self.known_flags:
            raise GattEncodeError(self.characteristic, f"flags 0x{flags:02X} set reserved bits")
        compiled = self.compiled[flags]
        items: list[Any] = [flags] if self.has_flags else []
        for field in compiled.fields:
            items.append(self._encode_item(field, values[field.name]))
        try:
            out = compiled.packer.pack(*items)
        except struct.error as exc:
            raise GattEncodeError(self.characteristic, f"value out of range: {exc}") from None
        if compiled.tail is not None:
            tail, tail_struct = compiled.tail, compiled.tail_struct
            assert tail_struct is not None
            repeated = values[tail.name]
            if not repeated:
                raise GattEncodeError(self.characteristic, f"{tail.name}: flag set but no value given")
            out += b"".join(tail_struct.pack(self._encode_item(tail, v)) for v in repeated)
        return out

    def _encode_item(self, field: Field, value: Any) -> Any:
        encode = field.codec.encode
        try:
            item = encode(value) if encode is not None else value
            struct.pack("<" + field.codec.fmt, item)  # range check here, so the error names the field
        except (FieldValueError, struct.error) as exc:
            raise GattEncodeError(self.characteristic, f"{field.name}: {exc}") from None
        return item
