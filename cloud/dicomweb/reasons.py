"""STOW-RS FailureReason values (0008,1197) the cloud answers with (PS3.18 10.5.3).

The codes are DIMSE status codes: PS3.4 Annex B.2.3 for the storage-specific ones (A7xx, A9xx, Cxxx) and
PS3.7 Annex C for the general ones. Within Cxxx ("cannot understand") the low byte is ours and matches the
edge's C-STORE statuses (edge/dicom/status.py) where the meaning is the same; docs/edge-dicom.md lists them.
"""

from __future__ import annotations

from typing import Final

PROCESSING_FAILURE: Final = 0x0110  # PS3.7 Annex C, Processing failure: our fault, worth a retry
DUPLICATE_SOP_INSTANCE: Final = 0x0111  # PS3.7 Annex C, Duplicate SOP Instance: held with other content
OUT_OF_RESOURCES: Final = 0xA700  # PS3.4 B.2.3 Refused: Out of Resources (the object store is full)
DATASET_DOES_NOT_MATCH: Final = 0xA900  # PS3.4 B.2.3: the instance is not of the study the request targets
CANNOT_UNDERSTAND: Final = 0xC000  # not a PS3.10 file, or a part that is not application/dicom
MISSING_ATTRIBUTE: Final = 0xC002  # a required UID is absent or invalid
INTEGRITY_FAILURE: Final = 0xC004  # the part's SHA-256 differs from its Content-Digest or the study manifest

RETRYABLE: Final = frozenset({PROCESSING_FAILURE, OUT_OF_RESOURCES})
