"""The wait of a loop with nothing to do: until it is stopped, woken, its next item falls due, or
its poll interval passes (whichever comes first)."""

from __future__ import annotations

import asyncio


async def until_woken(
    stop: asyncio.Event, wake: asyncio.Event, *, poll: float, due_at: float | None, now: float
) -> None:
    """The caller clears `wake` before it reads `due_at`: a wake-up in between is then not lost."""
    timeout = poll if due_at is None else max(0.0, min(poll, due_at - now))
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()
