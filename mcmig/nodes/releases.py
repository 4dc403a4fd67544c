"""Releases an MC service server sends on its own (PROFILE 3): to a partner when a
user's stay there ended, and to a user's primary when this partner gave up on a
migration it forwarded and so holds no stay for it.

The second kind is about both systems telling the same outcome. A partner that
answers its client 504 `timeout` cannot know whether the primary recorded the
migration (its 200 may have come back too late, or been lost), so it ends that
attempt's record at the primary: the release names the attempt's temporary
identity, and the primary ends the record only if it is still that attempt's.
It is sent once no copy of the attempt's request can still be on its way to the
primary, so that it can never overtake it: every leg of the attempt has ended by
then (each B2BUA's timeout is nested inside its upstream's, PROFILE 2.5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from mcmig.mc.body import CONTENT_TYPE, MigrationRelease, encode
from mcmig.node.runtime import SipNode, SipTimeoutError, SipTransportError
from mcmig.sip.peer import TransportAddress
from mcmig.sip.requests import make_request
from mcmig.sip.uri import SipUri


class ReleaseSender:
    """Sends a release in its own transaction, trying again (up to ``attempts``
    times in all) when it gets no answer or a 5xx (a B2BUA on the way gave up)."""

    def __init__(self, node: SipNode, psi: str, timeout: float) -> None:
        self.node = node
        self.psi = psi
        self.timeout = timeout
        self.log: logging.Logger = node.log

    async def send(
        self,
        target: SipUri,
        hop: TransportAddress | None,
        release: MigrationRelease,
        where: str,
        attempts: int = 1,
    ) -> None:
        user = release.mc_service_id
        if hop is None:
            self.log.warning("cannot release %s at %s: no route", user, where)
            return
        for attempt in range(1, attempts + 1):
            message = make_request(
                "MESSAGE",
                target,
                from_uri=self.psi,
                to_uri=str(target),
                body=encode(release),
                content_type=CONTENT_TYPE,
            )
            try:
                response = await self.node.send_request(message, hop, timeout=self.timeout)
            except (SipTimeoutError, SipTransportError) as exc:
                self.log.warning(
                    "release of %s at %s failed (%d of %d): %s", user, where, attempt, attempts, exc
                )
                continue
            self.log.info("released %s at %s: %d", user, where, response.status)
            if response.status < 500:
                return


@dataclass
class _Ending:
    temporary_id: str
    task: asyncio.Task[None]
    sent: asyncio.Event = field(default_factory=asyncio.Event)  # set once it is on the wire


class AttemptEnds:
    """The ends of failed attempts, one at most per user, on their way to the primary."""

    def __init__(
        self,
        send: Callable[[str, str], Coroutine[Any, Any, None]],
        horizon: float,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        self._send = send  # (user, temporary_id) -> the release, sent
        self.horizon = horizon  # seconds after an attempt began when none of it is left
        self._spawn = spawn
        self._ending: dict[str, _Ending] = {}

    def __len__(self) -> int:
        return len(self._ending)

    def pending_identity(self, user: str) -> str | None:
        """The temporary identity of the user's failed attempt still to be ended."""
        ending = self._ending.get(user)
        return None if ending is None else ending.temporary_id

    def end_later(self, user: str, temporary_id: str, began: float) -> None:
        """End the attempt that began at ``began`` (loop time) once its horizon passed."""
        loop = asyncio.get_running_loop()
        ending: _Ending

        async def run() -> None:
            await asyncio.sleep(max(0.0, began + self.horizon - loop.time()))
            ending.sent.set()
            await self._send(user, temporary_id)

        ending = _Ending(temporary_id, self._spawn(run()))
        previous = self._ending.get(user)
        if previous is not None and not previous.sent.is_set():
            previous.task.cancel()  # a newer attempt's end supersedes it
        self._ending[user] = ending
        ending.task.add_done_callback(lambda done: self._forget(user, done))

    async def before_attempt(self, user: str, temporary_id: str) -> None:
        """Called before a new attempt with ``temporary_id`` is sent. A pending end of
        an attempt with the same temporary identity would end the new attempt's
        record too: if it has not been sent yet it is dropped (the new attempt's
        outcome decides), else it is waited for. Another temporary identity has
        nothing to fear from it."""
        ending = self._ending.get(user)
        if ending is None or ending.temporary_id != temporary_id:
            return
        if not ending.sent.is_set():
            ending.task.cancel()
            self._ending.pop(user, None)
            return
        await asyncio.shield(ending.task)

    def _forget(self, user: str, done: asyncio.Task[None]) -> None:
        ending = self._ending.get(user)
        if ending is not None and ending.task is done:
            del self._ending[user]
