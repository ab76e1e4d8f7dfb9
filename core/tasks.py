"""Stopping background tasks the same way everywhere."""
from __future__ import annotations

import asyncio

__all__ = ["cancel_and_wait"]


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
