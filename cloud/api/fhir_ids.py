"""Our opaque ids (proto.messages.OPAQUE_ID: letters, digits and `. _ : -`) as FHIR logical ids and back.

A FHIR id allows only `[A-Za-z0-9\\-.]{1,64}` (FHIR R4 "id" datatype), so `.`, `_` and `:` are escaped
with `.` as the escape character: `.` -> `.2E`, `_` -> `.5F`, `:` -> `.3A`. Ids made of letters, digits
and `-` (the usual case) are unchanged. The mapping is one-to-one; an id whose escaped form would exceed
64 characters has no FHIR id.
"""

from __future__ import annotations

import re

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ESCAPES = {".": ".2E", "_": ".5F", ":": ".3A"}
_UNESCAPES = {code: char for char, code in _ESCAPES.items()}
_ESCAPED = re.compile(r"\.(2E|5F|3A)")


class FhirIdError(ValueError):
    """Not a FHIR id we issued, or an id that cannot be written as one."""


def to_fhir_id(opaque_id: str) -> str:
    """The FHIR logical id of one of our ids."""
    escaped = "".join(_ESCAPES.get(char, char) for char in opaque_id)
    if not _FHIR_ID.match(escaped):
        raise FhirIdError(f"id cannot be expressed as a FHIR id: {opaque_id!r}")
    return escaped


def from_fhir_id(fhir_id: str) -> str:
    """Our id for a FHIR logical id produced by `to_fhir_id`."""
    if not _FHIR_ID.match(fhir_id):
        raise FhirIdError("not a valid FHIR id")
    # Every `.` must start an escape; a bare one never comes from to_fhir_id.
    if fhir_id.count(".") != len(_ESCAPED.findall(fhir_id)):
        raise FhirIdError("not an id issued by this server")
    return _ESCAPED.sub(lambda m: _UNESCAPES["." + m.group(1)], fhir_id)
