"""Transfer syntaxes the simulator can send, whether this machine can encode them, and re-encoding.

Native (uncompressed) and Deflated syntaxes need nothing; RLE Lossless has an encoder inside pydicom;
JPEG-LS and JPEG 2000 need optional plugins (pyjpegls, pylibjpeg-openjpeg) that the project does not
depend on, so they are offered only when pydicom reports an encoder available.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from pydicom.dataset import Dataset
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from devices.modality.errors import EncoderUnavailableError
from devices.modality.studies import Study


@dataclass(frozen=True)
class SyntaxOption:
    """A transfer syntax the CLI can name."""

    name: str
    uid: UID
    needs_pixel_encoder: bool


SYNTAX_OPTIONS: tuple[SyntaxOption, ...] = (
    SyntaxOption("explicit", ExplicitVRLittleEndian, False),
    SyntaxOption("implicit", ImplicitVRLittleEndian, False),
    SyntaxOption("deflate", DeflatedExplicitVRLittleEndian, False),
    SyntaxOption("rle", RLELossless, True),
    SyntaxOption("jpeg-ls", JPEGLSLossless, True),
    SyntaxOption("j2k", JPEG2000Lossless, True),
)
SYNTAXES_BY_NAME = {option.name: option for option in SYNTAX_OPTIONS}


def missing_encoder_dependencies(option: SyntaxOption) -> list[str]:
    """What must be installed before `option` can encode pixel data; empty when it can."""
    if not option.needs_pixel_encoder:
        return []
    encoder = get_encoder(option.uid)
    return [] if encoder.is_available else list(encoder.missing_dependencies)


def available_syntaxes() -> tuple[SyntaxOption, ...]:
    """The syntaxes this machine can produce right now."""
    return tuple(option for option in SYNTAX_OPTIONS if not missing_encoder_dependencies(option))


def encode_instance(instance: Dataset, option: SyntaxOption) -> Dataset:
    """A copy of a native instance re-encoded as `option`; the SOP Instance UID is kept (lossless only)."""
    missing = missing_encoder_dependencies(option)
    if missing:
        raise EncoderUnavailableError(option.uid.name, missing)
    encoded = copy.deepcopy(instance)
    if option.needs_pixel_encoder:
        # Lossless compression does not create a new instance (PS3.4 C.6.1.1.6), so keep the UID.
        encoded.compress(option.uid, generate_instance_uid=False)
    else:
        encoded.file_meta.TransferSyntaxUID = option.uid
    return encoded


def encode_study(study: Study, option: SyntaxOption) -> Study:
    """The study with every instance re-encoded as `option`."""
    return replace(study, instances=tuple(encode_instance(ds, option) for ds in study.instances))


def to_native(instance: Dataset) -> Dataset:
    """A copy decoded to Explicit VR Little Endian, for a peer that refused the compressed syntax."""
    native = copy.deepcopy(instance)
    if UID(native.file_meta.TransferSyntaxUID).is_compressed:
        native.decompress(generate_instance_uid=False)
    else:
        native.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return native
