"""Durability: every enqueue the outbox acknowledged survives a kill -9 of the process, mid-stream.

A child process (this module run as a program) enqueues from several threads and prints each message as
soon as its Future says it is durable; the test kills it with SIGKILL while it is busy, reopens the file
and must find every reported message, with sequence numbering continuing after the highest reported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from edge.outbox import Lane, Outbox
from proto import keys
from tests.unit.edge.test_outbox_queue import EDGE, alert, vitals

ROOT = Path(__file__).resolve().parents[3]
REPORTS_BEFORE_KILL = 300


def produce(path: Path) -> None:
    """The child: enqueue forever from 4 threads, printing `<stream> <sequence> <message id>` once durable."""
    box = Outbox(path, edge_id=EDGE, signer=keys.generate())
    out = threading.Lock()

    def worker(n: int) -> None:
        batch = vitals(20, patient=f"pt-{n}")
        while True:
            futures = [box.enqueue(alert() if i % 10 == 0 else batch) for i in range(20)]
            for future in futures:
                done = future.result()
                with out:
                    sys.stdout.write(f"{done.stream} {done.sequence} {done.message_id}\n")
                    sys.stdout.flush()

    for n in range(4):
        threading.Thread(target=worker, args=(n,), daemon=True).start()
    while True:
        time.sleep(1)


def test_every_reported_enqueue_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.edge.test_outbox_durability", str(path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    reported: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(reported) < REPORTS_BEFORE_KILL and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            reported.append(line)
        assert len(reported) >= REPORTS_BEFORE_KILL, f"child reported only {len(reported)} enqueues"
        os.kill(child.pid, signal.SIGKILL)  # while its threads are still enqueueing and committing
    finally:
        child.kill()
        rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    # Whatever reached the pipe before the kill was reported durable; a torn last line is not a report.
    reported += rest.splitlines(keepends=True)
    records = [line.split() for line in reported if line.endswith("\n")]
    assert len(records) >= REPORTS_BEFORE_KILL

    with Outbox(path, edge_id=EDGE, signer=keys.generate()) as box:
        found = set(box.message_ids())
        missing = [r for r in records if uuid.UUID(r[2]) not in found]
        assert missing == []
        highest = max(int(seq) for stream, seq, _ in records if stream == "vitals")
        assert box.enqueue(vitals()).result(5).sequence > highest
        # The lanes are intact and readable in order after the crash.
        sequences = [m.sequence for m in box.pending(Lane.VITALS, limit=100_000).messages]
        assert sequences == sorted(sequences)


if __name__ == "__main__":
    produce(Path(sys.argv[1]))
