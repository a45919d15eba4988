"""What to publish next: queued outbox messages, alerts lane first, each lane in commit order, within the window."""

from __future__ import annotations

import threading

from edge.outbox import Lane, Outbox, StoredMessage
from edge.uplink.window import InflightWindow


def take_next(outbox: Outbox, window: InflightWindow, lock: threading.Lock, now: float) -> list[StoredMessage]:
    """Messages to publish now, in send order, registered in `window` as sent at `now`.

    Higher lanes go first and take the room they need; a lower lane gets what is left, so a vitals backlog
    never delays an alert (which may also use the window's reserved slots). Within a lane (one stream
    each) messages follow commit order, which is sequence order. Only the calling thread moves cursors
    back (reset/expire), so the outbox is read without holding `lock`; acks arriving meanwhile only free
    room.
    """
    chosen: list[StoredMessage] = []
    for lane in Lane:
        while True:
            with lock:
                room = window.capacity(lane)
                cursor = window.cursor(lane)
            if room <= 0:
                break
            page = outbox.pending(lane, after_row_id=cursor, limit=room)
            with lock:
                for message in page.messages:
                    window.sent(message.message_id, lane, message.row_id, now)
                window.advance(lane, page.last_row_id)
            chosen.extend(page.messages)
            if page.last_row_id == cursor or len(page.messages) < room:
                break  # the lane is drained (or the rest is being acknowledged: the next pass gets it)
    return chosen
