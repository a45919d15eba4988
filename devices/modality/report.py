"""What happened to each instance of a send: DIMSE statuses classified, and the totals of a whole send."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    NOT_SENT = "not_sent"  # no accepted presentation context, so no C-STORE was issued


def classify_status(status: int) -> Outcome:
    """The outcome of a C-STORE response status (PS3.7 C.1-C.4; Storage statuses in PS3.4 B.2.3).

    0x0000 is success; 0x0001 and 0xB000-0xBFFF are warnings (coercion, elements discarded, data set
    does not match SOP class); everything else, including 0xA7xx, 0xA9xx and 0xCxxx, is a failure.
    """
    if status == 0x0000:
        return Outcome.SUCCESS
    if status == 0x0001 or 0xB000 <= status <= 0xBFFF:
        return Outcome.WARNING
    return Outcome.FAILURE


@dataclass(frozen=True)
class InstanceResult:
    """One instance's fate: the status the SCP answered and what went over the wire."""

    index: int  # position in the study, from 0
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str  # the syntax it travelled in, after any fallback
    outcome: Outcome
    status: int | None  # None when not sent
    error_comment: str | None
    bytes_sent: int
    seconds: float


@dataclass(frozen=True)
class SendReport:
    """The result of `send_study`: verification, negotiation and every instance's outcome."""

    host: str
    port: int
    called_aet: str
    calling_aet: str
    echo_status: int | None  # None when the peer did not accept the Verification SOP class
    accepted_syntaxes: dict[str, tuple[str, ...]]  # SOP class -> transfer syntaxes the peer accepted
    results: tuple[InstanceResult, ...]
    seconds: float
    tcp_nodelay: bool  # read back from the association socket after setting it

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)

    @property
    def all_succeeded(self) -> bool:
        return bool(self.results) and all(result.outcome is Outcome.SUCCESS for result in self.results)

    @property
    def bytes_sent(self) -> int:
        return sum(result.bytes_sent for result in self.results)

    @property
    def instances_per_second(self) -> float:
        sent = sum(1 for result in self.results if result.outcome is not Outcome.NOT_SENT)
        return sent / self.seconds if self.seconds > 0 else 0.0
