"""Collecting one turn: what the client read, up to the turn's `done` or the `interrupted` that ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ._inbox import SenderFailed, StreamClosed
from .errors import ClientError, ConnectionClosed, ServerError
from .messages import AudioFrame, Message, Turn


async def collect(
    turn: Turn,
    next_item: Callable[[float | None], Awaitable[Message | SenderFailed | StreamClosed]],
    timeout: float | None,
) -> Turn:
    """Add what ``next_item`` reads to ``turn`` until it ends; an `error` about it (or a fatal one) raises."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            item = await next_item(remaining)
        except TimeoutError:
            raise TimeoutError(f"turn {turn.id} not done within {timeout} s") from None
        if isinstance(item, StreamClosed):
            raise ConnectionClosed(item.code, item.reason)
        if isinstance(item, SenderFailed):
            raise ClientError("the text source of stream() failed") from item.error
        turn._add(item)
        if isinstance(item, AudioFrame):
            continue
        kind = item.type
        if kind == "done" and item.get("id") == turn.id:
            turn.done = item
        elif kind == "interrupted" and (item.generation or 0) > turn.generation:
            turn.interrupted = item
        elif kind == "error" and (item.get("fatal") or item.get("id") == turn.id):
            raise ServerError(item)
        else:
            continue
        turn.finished_at = item.received_at
        return turn
