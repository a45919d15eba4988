"""Typed errors of the edge's DICOM side; pydicom, pynetdicom, sqlite3 and httpx errors never cross it."""

from __future__ import annotations


class DicomError(Exception):
    """Base of every error raised by edge.dicom."""


# --- storing instances -----------------------------------------------------------------------------------------


class StoreError(DicomError):
    """An instance could not be stored; the SCP answers with the status mapped to the subclass."""


class StorageFullError(StoreError):
    """The disk is full or the configured disk budget would be exceeded."""


class UnreadableDatasetError(StoreError):
    """The bytes do not parse as a dataset in the negotiated transfer syntax."""


class MissingAttributeError(StoreError):
    """A required attribute (a UID) is absent or not a valid value."""

    def __init__(self, keyword: str, detail: str = "absent") -> None:
        super().__init__(f"{keyword}: {detail}")
        self.keyword = keyword


class UidMismatchError(StoreError):
    """The dataset's SOP Instance UID differs from the C-STORE request's Affected SOP Instance UID."""


class SopClassMismatchError(StoreError):
    """The dataset's SOP Class UID differs from the C-STORE request's Affected SOP Class UID."""


class StoreIOError(StoreError):
    """A disk or index failure other than a full disk."""


# --- querying ----------------------------------------------------------------------------------------------


class QueryError(DicomError):
    """A C-FIND identifier we cannot process (unknown level, missing unique key of a higher level)."""


# --- forwarding to the cloud ----------------------------------------------------------------------------------


class ForwardError(DicomError):
    """An upload to the cloud did not complete."""


class TransientUploadError(ForwardError):
    """Worth retrying: the network failed, or the cloud answered 5xx or 429."""


class UploadRejectedError(ForwardError):
    """The cloud refused the request itself (4xx): retrying the same request will not help."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
