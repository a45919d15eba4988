"""The DIMSE status codes the edge's DICOM services answer with.

C-STORE statuses come from PS3.4 Annex B.2.3 (Table B.2-1: A7xx out of resources, A9xx data set does not match
SOP class, Cxxx cannot understand) and the general codes of PS3.7 Annex C (0x0122 SOP class not supported).
Within the Cxxx "cannot understand" range the low byte is ours; docs/edge-dicom.md lists them. C-FIND statuses
come from PS3.4 C.4.1.1.4 (Table C.4-1).
"""

from __future__ import annotations

from typing import Final

SUCCESS: Final = 0x0000

# --- C-STORE (PS3.4 B.2.3, PS3.7 C) -------------------------------------------------------------------------
# Refused: Out of Resources (A7xx): the disk is full or the configured budget is spent. Modalities keep the
# instance and retry later, which is what we want when the edge cannot hold more.
OUT_OF_RESOURCES: Final = 0xA700
# Error: Data Set does not match SOP Class (A9xx): the dataset's SOP Class UID is not the one of the request.
DATASET_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
# Error: Cannot understand (Cxxx), our sub-codes:
CANNOT_UNDERSTAND: Final = 0xC000  # the dataset does not parse in its transfer syntax
INTERNAL_ERROR: Final = 0xC001  # a fault of ours (I/O other than a full disk, a bug): worth a retry later
MISSING_ATTRIBUTE: Final = 0xC002  # a required UID (SOP Instance/Class, Study, Series) is absent or invalid
UID_MISMATCH: Final = 0xC003  # the dataset's SOP Instance UID is not the request's Affected SOP Instance UID
# Refused: SOP Class not supported (PS3.7 Annex C, failure codes): the request's SOP class is not a
# storage class we accept on this presentation context.
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122

# --- C-FIND (PS3.4 C.4.1.1.4, Table C.4-1) ------------------------------------------------------------------
PENDING: Final = 0xFF00  # a match follows, all optional keys supported
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
UNABLE_TO_PROCESS: Final = 0xC000
MATCHING_CANCELLED: Final = 0xFE00

STORE_STATUS_NAMES: Final[dict[int, str]] = {
    SUCCESS: "success",
    OUT_OF_RESOURCES: "out_of_resources",
    DATASET_DOES_NOT_MATCH_SOP_CLASS: "dataset_does_not_match_sop_class",
    CANNOT_UNDERSTAND: "cannot_understand",
    INTERNAL_ERROR: "internal_error",
    MISSING_ATTRIBUTE: "missing_attribute",
    UID_MISMATCH: "uid_mismatch",
    SOP_CLASS_NOT_SUPPORTED: "sop_class_not_supported",
}


def status_name(status: int) -> str:
    """A stable, log-friendly name for a C-STORE status we send."""
    return STORE_STATUS_NAMES.get(status, f"0x{status:04X}")
