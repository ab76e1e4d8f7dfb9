"""Stopping background tasks the same way everywhere."""
from __future__ import annotations

import asyncio

__all__ = ["cancel_and_wait", "wait_event"]


async def cancel_and_wait(*tasks: "asyncio.Task | None") -> None:
    """Cancel each task and wait until it has ended.

    Its CancelledError, or an error it ended with (a background job logs its
    own failures), is not raised again: stopping must not fail because a job
    already failed.  Cancelling the caller still cancels the caller.
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    for task in pending:
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the caller itself is being cancelled
        except Exception:  # noqa: BLE001 -- see the docstring
            pass


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds passed; True when it was set.

    Unlike ``asyncio.wait_for(event.wait(), timeout)`` on Python 3.11, a
    cancellation of the caller that races the event being set is never
    swallowed (fixed only in 3.12, gh-86296).
    """
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()
