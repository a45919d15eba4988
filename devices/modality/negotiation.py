"""Presentation contexts to propose for a study, and the syntax each instance travels in once accepted.

An association may carry several presentation contexts for the same abstract syntax (PS3.8 9.3.2.2),
so a compressed or deflated instance is proposed twice: in its own syntax, and as native Explicit /
Implicit VR Little Endian to fall back on when the peer declines the compressed one. Implicit VR Little
Endian is the default every SCP must accept (PS3.5 10.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

VERIFICATION_SOP_CLASS = UID("1.2.840.10008.1.1")
NATIVE_SYNTAXES: tuple[UID, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
MAX_PRESENTATION_CONTEXTS = 128  # context IDs are odd numbers 1..255 (PS3.8 9.3.2.2)


@dataclass(frozen=True)
class ProposedContext:
    abstract_syntax: UID
    transfer_syntaxes: tuple[UID, ...]


@dataclass(frozen=True)
class WirePlan:
    """How an instance goes over the wire: in `syntax`, decoded to native pixels first if `decode`."""

    syntax: UID
    decode: bool


def propose_contexts(instances: Iterable[tuple[UID, UID]]) -> tuple[ProposedContext, ...]:
    """Contexts for Verification and for each (SOP class, transfer syntax) pair, without duplicates."""
    proposed: list[ProposedContext] = [ProposedContext(VERIFICATION_SOP_CLASS, NATIVE_SYNTAXES)]
    for sop_class, syntax in sorted(set(instances)):
        candidates = [ProposedContext(sop_class, NATIVE_SYNTAXES)]
        if syntax not in NATIVE_SYNTAXES:
            candidates.insert(0, ProposedContext(sop_class, (syntax,)))
        proposed.extend(context for context in candidates if context not in proposed)
    if len(proposed) > MAX_PRESENTATION_CONTEXTS:
        raise ValueError(f"{len(proposed)} presentation contexts exceed the limit of {MAX_PRESENTATION_CONTEXTS}")
    return tuple(proposed)


def plan_wire_syntax(sop_class: UID, syntax: UID, accepted: Mapping[UID, frozenset[UID]]) -> WirePlan | None:
    """The syntax to send an instance in given what the peer accepted, or None if it cannot be sent.

    The instance's own syntax wins; otherwise a native syntax the peer accepted (Explicit VR first),
    which for an encapsulated (compressed) instance means decoding the pixel data losslessly first.
    """
    offered = accepted.get(sop_class, frozenset())
    if syntax in offered:
        return WirePlan(syntax, decode=False)
    for native in NATIVE_SYNTAXES:
        if native in offered:
            return WirePlan(native, decode=syntax.is_encapsulated)
    return None
