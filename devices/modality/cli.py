"""`telemed-sim modality`: generate a study and send it to a Storage SCP, one progress line per instance."""

from __future__ import annotations

import argparse
import ssl
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from devices.modality.errors import ModalityError
from devices.modality.report import InstanceResult, Outcome, SendReport
from devices.modality.scu import send_study
from devices.modality.studies import Study, StudyKind, generate_study
from devices.modality.syntaxes import SYNTAX_OPTIONS, SYNTAXES_BY_NAME, available_syntaxes, encode_study

EXIT_OK, EXIT_INSTANCE_FAILED, EXIT_ERROR = 0, 1, 2
MIB = 1024 * 1024


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the modality options to `parser` (shared by the subcommand and `python -m devices.modality`)."""
    ready = ", ".join(option.name for option in available_syntaxes())
    parser.add_argument("--host", required=True, help="Storage SCP host")
    parser.add_argument("--port", required=True, type=int, help="Storage SCP port")
    parser.add_argument("--aet", required=True, help="called AE title (the SCP's)")
    parser.add_argument("--calling-aet", default="TELEMED_SIM", help="our AE title (default %(default)s)")
    parser.add_argument("--study", choices=[kind.value for kind in StudyKind], default="ct",
                        help="ct series, us cine loop or dx chest radiograph (default %(default)s)")
    parser.add_argument("--slices", type=int, help="CT slices (default 100)")
    parser.add_argument("--frames", type=int, help="US frames (default 30)")
    parser.add_argument("--rows", type=int, help="image rows (default 512 CT, 480 US, 2048 DX)")
    parser.add_argument("--columns", type=int, help="image columns (default 512 CT, 640 US, 2048 DX)")
    parser.add_argument("--color", action="store_true", help="US: RGB with colour Doppler instead of grey")
    parser.add_argument("--transfer-syntax", choices=[option.name for option in SYNTAX_OPTIONS],
                        default="explicit", help=f"default %(default)s; encoders installed for: {ready}")
    parser.add_argument("--patient-name", help="patient name in characters, e.g. 张伟 (default: random)")
    parser.add_argument("--seed", type=int, help="fix patient, anatomy and noise (UIDs stay fresh)")
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout, s (default %(default)s)")
    parser.add_argument("--tls-ca", type=Path, help="enable TLS, trusting this CA bundle (PEM)")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--tls-key", type=Path, help="client private key (PEM) for mutual TLS")
    parser.add_argument("--save-dir", type=Path, help="also write the instances as DICOM files here")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `modality` on the top-level `telemed-sim` subparsers; it dispatches via `args.func`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "modality", help="send a simulated CT, ultrasound or DX study over DICOM C-STORE",
        description=__doc__,
    )
    configure_parser(parser)
    parser.set_defaults(func=main)
    return parser


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_ca is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(args.tls_ca))
    if args.tls_cert is not None:
        context.load_cert_chain(str(args.tls_cert), str(args.tls_key) if args.tls_key else None)
    return context


def _build_study(args: argparse.Namespace, out: TextIO) -> Study:
    kind = StudyKind(args.study)
    count = args.slices if kind is StudyKind.CT else args.frames if kind is StudyKind.US else None
    started = time.perf_counter()
    study = generate_study(kind, count=count, rows=args.rows, columns=args.columns, color=args.color,
                           patient_name=args.patient_name, seed=args.seed)
    study = encode_study(study, SYNTAXES_BY_NAME[args.transfer_syntax])
    patient = study.encounter.patient
    print(f"generated {kind.value} study: {len(study.instances)} instance(s), patient ID {patient.patient_id}, "
          f"accession {study.encounter.accession_number}, {SYNTAXES_BY_NAME[args.transfer_syntax].uid.name}, "
          f"{time.perf_counter() - started:.2f} s", file=out)
    return study


def _save(study: Study, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for ds in study.instances:
        ds.save_as(directory / f"{ds.Modality}.{ds.SOPInstanceUID}.dcm", enforce_file_format=True)


def format_result(result: InstanceResult, total: int) -> str:
    """One progress line: position, outcome, status, UID, size and time."""
    width = len(str(total))
    status = f"0x{result.status:04X}" if result.status is not None else "------"
    line = (f"[{result.index + 1:>{width}}/{total}] {result.outcome.value:<8} {status} {result.sop_instance_uid} "
            f"{result.bytes_sent / 1024:8.1f} KiB {result.seconds * 1000:7.1f} ms")
    return line + (f"  {result.error_comment}" if result.error_comment else "")


def format_summary(report: SendReport) -> str:
    """The closing line: counts by outcome and throughput."""
    mib = report.bytes_sent / MIB
    return (f"sent {len(report.results)} instance(s) to {report.called_aet}@{report.host}:{report.port}: "
            f"{report.count(Outcome.SUCCESS)} ok, {report.count(Outcome.WARNING)} warning, "
            f"{report.count(Outcome.FAILURE)} failed, {report.count(Outcome.NOT_SENT)} not sent; "
            f"{mib:.1f} MiB in {report.seconds:.2f} s = {report.instances_per_second:.1f} instances/s "
            f"({mib / report.seconds if report.seconds else 0.0:.1f} MiB/s)")


def main(args: argparse.Namespace, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the subcommand: 0 when every instance was stored, 1 when any failed, 2 on any other error."""
    try:
        study = _build_study(args, out)
        if args.save_dir is not None:
            _save(study, args.save_dir)

        def progress(result: InstanceResult, total: int) -> None:
            if not args.quiet:
                print(format_result(result, total), file=out, flush=True)

        report = send_study(args.host, args.port, args.aet, args.calling_aet, study, tls=_tls_context(args),
                            on_progress=progress, timeout=args.timeout)
    except (ModalityError, OSError, ssl.SSLError) as exc:
        print(f"telemed-sim modality: error: {exc}", file=err)
        partial = getattr(exc, "report", None)
        if isinstance(partial, SendReport):
            print(format_summary(partial), file=out)
        return EXIT_ERROR
    print(format_summary(report), file=out)
    failed = report.count(Outcome.FAILURE) + report.count(Outcome.NOT_SENT)
    return EXIT_OK if failed == 0 else EXIT_INSTANCE_FAILED
