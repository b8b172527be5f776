"""Follow a container's log when ACI only ever returns the whole text, maybe truncated.

ACI's logs API answers with the log so far, and after a stop only its last 16 KB. A
cursor is an offset into the full log; to place it inside a truncated answer the
follower remembers the text just before the cursor and finds it again.
"""

from __future__ import annotations

from dataclasses import dataclass

# Enough text to recognise where we were (several JSON-lines events).
_TAIL_CHARS = 512


@dataclass(frozen=True)
class LogPosition:
    """The cursor handed out and the text just before it."""

    cursor: int
    tail: str


@dataclass(frozen=True)
class LogChunk:
    """What a read of the log yields."""

    text: str
    position: LogPosition
    is_gap: bool  # some lines between the old cursor and ``text`` are gone


def next_chunk(
    content: str, cursor: int, known: LogPosition | None, *, is_finished: bool
) -> LogChunk:
    """Return the complete lines of ``content`` after ``cursor`` (all of it when finished)."""
    is_gap = False
    if cursor == 0:
        start = 0
    elif known is None or known.cursor != cursor or not known.tail:
        start = min(cursor, len(content))  # no memory of this cursor: assume the full log
    elif content[max(0, cursor - len(known.tail)) : cursor] == known.tail:
        start = cursor  # the full log: the cursor is where it was
    else:
        found = content.find(known.tail)
        if found >= 0:
            start = found + len(known.tail)
        else:
            # Truncated past the cursor: start at the first whole line we still have.
            start, is_gap = content.find("\n") + 1, True
    new = content[start:]
    end = len(new) if is_finished else new.rfind("\n") + 1
    stop = start + end
    position = LogPosition(cursor + end, content[max(0, stop - _TAIL_CHARS) : stop])
    if end == 0 and known is not None and known.cursor == cursor:
        position = known  # nothing new: keep the longer memory
    return LogChunk(new[:end], position, is_gap)
