"""Which patients a dashboard session must record as seen again (pure; the clock is passed in).

The ward overview is a live view: it refetches on every live update and every minute. Recording 200 rows
per refresh would bury the audit log in repeats, so, as the live WebSocket records a patient's first update
per connection (`live.read`), the overview records each patient once per session and `window` (event
`ward.overview`): the log still says who had which patient on screen, to within the window. Entries are kept
only for recent sessions (bounded memory); a process that restarts or another replica records again (more
records, never fewer).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

DEFAULT_WINDOW: Final = dt.timedelta(minutes=15)
MAX_SESSIONS: Final = 2000


class AuditWindow:
    """Last recording time per (session, patient)."""

    def __init__(self, window: dt.timedelta = DEFAULT_WINDOW, *, max_sessions: int = MAX_SESSIONS) -> None:
        self.window = window
        self._max_sessions = max_sessions
        self._seen: OrderedDict[bytes, dict[str, dt.datetime]] = OrderedDict()

    def due(self, session: bytes, patient_ids: Iterable[str], now: dt.datetime) -> list[str]:
        """The patients not recorded for this session within the window, in the given order."""
        seen = self._seen.get(session, {})
        return [pid for pid in patient_ids if (last := seen.get(pid)) is None or now - last >= self.window]

    def recorded(self, session: bytes, patient_ids: Iterable[str], now: dt.datetime) -> None:
        """Note that the patients were recorded (call after the audit rows were written)."""
        seen = self._seen.setdefault(session, {})
        self._seen.move_to_end(session)
        for pid in patient_ids:
            seen[pid] = now
        while len(self._seen) > self._max_sessions:
            self._seen.popitem(last=False)
