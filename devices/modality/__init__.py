"""A DICOM modality simulator: realistic CT, ultrasound and DX studies and a C-STORE SCU to send them.

`studies` and the phantoms are pure dataset generation; `scu` is the network adapter; `cli` the command.
"""

from devices.modality.errors import (
    AssociationAbortedError,
    AssociationRejectedError,
    DicomConnectionError,
    EchoFailedError,
    EncoderUnavailableError,
    InvalidPatientNameError,
    InvalidStudyParametersError,
    ModalityError,
    SendError,
)
from devices.modality.report import InstanceResult, Outcome, SendReport
from devices.modality.scu import send_study
from devices.modality.studies import (
    Study,
    StudyKind,
    generate_ct_study,
    generate_dx_study,
    generate_study,
    generate_us_study,
)
from devices.modality.syntaxes import SYNTAXES_BY_NAME, available_syntaxes, encode_study

__all__ = [
    "SYNTAXES_BY_NAME",
    "AssociationAbortedError",
    "AssociationRejectedError",
    "DicomConnectionError",
    "EchoFailedError",
    "EncoderUnavailableError",
    "InstanceResult",
    "InvalidPatientNameError",
    "InvalidStudyParametersError",
    "ModalityError",
    "Outcome",
    "SendError",
    "SendReport",
    "Study",
    "StudyKind",
    "available_syntaxes",
    "encode_study",
    "generate_ct_study",
    "generate_dx_study",
    "generate_study",
    "generate_us_study",
    "send_study",
]
