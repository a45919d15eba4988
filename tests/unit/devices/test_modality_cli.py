"""The `telemed-sim modality` subcommand: argument parsing, error exits and output lines."""

from __future__ import annotations

import argparse
import io
import socket

import pytest

from devices.modality.cli import add_parser, format_result, format_summary, main
from devices.modality.report import InstanceResult, Outcome, SendReport


def parse(*argv: str) -> argparse.Namespace:
    top = argparse.ArgumentParser(prog="telemed-sim")
    add_parser(top.add_subparsers(dest="command", required=True))
    return top.parse_args(["modality", *argv])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_subcommand_parses_the_documented_options() -> None:
    args = parse("--host", "h", "--port", "104", "--aet", "PACS", "--study", "ct", "--slices", "100",
                 "--calling-aet", "SIM", "--transfer-syntax", "rle", "--patient-name", "张伟", "--seed", "7")
    assert (args.host, args.port, args.aet, args.calling_aet) == ("h", 104, "PACS", "SIM")
    assert (args.study, args.slices, args.transfer_syntax) == ("ct", 100, "rle")
    assert (args.patient_name, args.seed) == ("张伟", 7)
    assert args.func is main


def test_unknown_study_kind_is_an_argument_error() -> None:
    with pytest.raises(SystemExit):
        parse("--host", "h", "--port", "1", "--aet", "A", "--study", "mr")


def test_refused_connection_exits_2_with_a_message() -> None:
    args = parse("--host", "127.0.0.1", "--port", str(closed_port()), "--aet", "PACS", "--slices", "1",
                 "--rows", "16", "--columns", "16", "--timeout", "5")
    out, err = io.StringIO(), io.StringIO()
    assert main(args, out=out, err=err) == 2
    assert "cannot connect" in err.getvalue()
    assert "generated ct study: 1 instance(s)" in out.getvalue()


def test_bad_patient_name_exits_2_before_connecting() -> None:
    args = parse("--host", "127.0.0.1", "--port", "1", "--aet", "PACS", "--patient-name", "张")
    err = io.StringIO()
    assert main(args, out=io.StringIO(), err=err) == 2
    assert "family name" in err.getvalue()


def test_progress_and_summary_lines() -> None:
    ok = InstanceResult(4, "1.2", "1.2.3.4", "1.2.840.10008.1.2.5", Outcome.SUCCESS, 0, None, 2048, 0.0123)
    failed = InstanceResult(5, "1.2", "1.2.3.5", "1.2.840.10008.1.2.5", Outcome.FAILURE, 0xA700, "disk full", 10, 0.002)
    assert format_result(ok, 100) == "[  5/100] success  0x0000 1.2.3.4      2.0 KiB    12.3 ms"
    assert format_result(failed, 100) == "[  6/100] failure  0xA700 1.2.3.5      0.0 KiB     2.0 ms  disk full"
    report = SendReport("pacs", 104, "PACS", "SIM", 0, {}, (ok, failed), 2.0, True)
    assert format_summary(report) == (
        "sent 2 instance(s) to PACS@pacs:104: 1 ok, 0 warning, 1 failed, 0 not sent; "
        "0.0 MiB in 2.00 s = 1.0 instances/s (0.0 MiB/s)")
