"""Group commit for both stores: messages that arrive together share one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from adapter.store.ports import (
    AddResult,
    Link,
    NewMessage,
)

# --- group commit -----------------------------------------------------------------------

Queued = tuple[NewMessage, tuple[Link, ...], "asyncio.Future[AddResult]"]
GroupWriter = Callable[[list[Queued]], Awaitable[Sequence[AddResult | BaseException]]]
MAX_GROUP = 64  # messages per group commit; bounds one transaction's size and time


class GroupCommit:
    """`add_message` for both stores: messages that arrive while a group is being written
    go into the next group, so concurrent connections share one commit.

    Each caller returns only once the group holding its message was written (`write`
    gives one result or exception per message, in order). A group that fails as a whole
    fails every caller in it; a caller that gave up (timeout) is skipped, and its message
    may be stored anyway: the sender's resend finds it (dedup).
    """

    def __init__(self, write: GroupWriter) -> None:
        self._write = write
        self._queue: list[Queued] = []
        self._committer: asyncio.Task[None] | None = None

    async def add(self, message: NewMessage, links: Sequence[Link]) -> AddResult:
        if message.truncated:  # the head of a message is never readable data to accept
            raise ValueError("a truncated raw can only be kept as a dead letter")
        future: asyncio.Future[AddResult] = asyncio.get_running_loop().create_future()
        self._queue.append((message, tuple(links), future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued())
        return await future  # a caller that gives up cancels only its own future

    async def _commit_queued(self) -> None:
        while self._queue:
            batch, self._queue = take_group(self._queue)
            try:
                results = await self._write(batch)
            except BaseException as exc:  # the whole group failed: every caller hears it
                _settle(batch, [exc] * len(batch))
                if not isinstance(exc, Exception):
                    raise
                continue
            _settle(batch, results)


def _settle(batch: Sequence[Queued], results: Sequence[AddResult | BaseException]) -> None:
    for (*_, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def take_group(queue: list[Queued]) -> tuple[list[Queued], list[Queued]]:
    """The next group (at most MAX_GROUP, unique dedup keys) and what stays queued.

    A key seen twice (a sender re-sending a message while the first copy is in flight) waits
    for the next group, where it is found stored and answered as a duplicate.
    """
    group: list[Queued] = []
    rest: list[Queued] = []
    keys: set[str] = set()
    for item in queue:
        key = item[0].dedup_key
        if len(group) < MAX_GROUP and key not in keys:
            keys.add(key)
            group.append(item)
        else:
            rest.append(item)
    return group, rest
