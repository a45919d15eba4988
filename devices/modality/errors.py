"""Typed errors raised at the modality simulator's boundaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devices.modality.report import SendReport


class ModalityError(Exception):
    """Base of every error the modality simulator raises."""


class InvalidPatientNameError(ModalityError, ValueError):
    """A patient name that cannot be split into a family and a given name."""


class InvalidStudyParametersError(ModalityError, ValueError):
    """Study generation options outside what the IOD or the phantom supports."""


class EncoderUnavailableError(ModalityError):
    """The transfer syntax needs a pixel data encoder plugin that is not installed."""

    def __init__(self, syntax_name: str, missing: list[str]) -> None:
        self.syntax_name = syntax_name
        self.missing = missing
        super().__init__(f"no encoder installed for {syntax_name}; install one of: {'; '.join(missing)}")


class SendError(ModalityError):
    """Base of the errors raised while sending a study to a Storage SCP."""


class DicomConnectionError(SendError):
    """The TCP (or TLS) connection to the SCP could not be made: refused, unreachable or handshake failed."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(f"cannot connect to DICOM peer at {host}:{port}")


class AssociationRejectedError(SendError):
    """The SCP answered A-ASSOCIATE-RJ; result, source and reason as in PS3.8 9.3.4."""

    def __init__(self, result: int, source: int, reason: int, description: str) -> None:
        self.result = result
        self.source = source
        self.reason = reason
        super().__init__(f"association rejected: {description} (result={result} source={source} reason={reason})")


class AssociationAbortedError(SendError):
    """The association was aborted (A-ABORT / A-P-ABORT) or timed out; `report` holds what completed."""

    def __init__(self, message: str, report: SendReport | None = None) -> None:
        self.report = report
        super().__init__(message)


class EchoFailedError(SendError):
    """The SCP answered the C-ECHO with a non-success status."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"C-ECHO failed with status 0x{status:04X}")
