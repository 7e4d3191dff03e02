"""What the WebSocket sessions of one server share (docs/protocol.md).

- A **JobFeed** per job followed over the WebSocket: the job's events in order, kept once
  however many sessions read them and however slowly. A reader is a position in the feed, so a
  reader that falls behind costs the server nothing of its own: the feed holds the job's points
  once (the arrays the engine's result holds anyway), and a run of progress of one stage, or of
  queue positions, collapses to the latest, which is all that a reader behind needs; of the
  previews only the newest is kept (a reader skips the ones it replaced). A session
  that attaches to a running job reads the same feed from its start (feature ``attach``).
- **Sessions**: how many WebSocket sessions each client has and how many there are in all
  (settings ``max_ws_sessions_per_client``, ``max_ws_sessions_total``), the feeds of the open
  jobs, the session that follows each, and the jobs whose session dropped and that wait
  ``reattach_grace_s`` for their client to attach again before they are cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from aetherscan.server.jobs import (
    CancelledEvent,
    DoneEvent,
    FailedEvent,
    Job,
    JobEvent,
    PreviewEvent,
    ProgressEvent,
    QueuedEvent,
)
from aetherscan.settings import Settings

log = logging.getLogger(__name__)

END_EVENTS = (DoneEvent, FailedEvent, CancelledEvent)


class JobFeed:
    """The events of one job, in order, ending with one of END_EVENTS (see the module)."""

    def __init__(self, job_id: str, events: Iterable[JobEvent] = ()) -> None:
        self.job_id = job_id
        self.events: list[JobEvent] = []
        self.follower: Follower | None = None  # the session that follows the job now
        self._readers: set[FeedReader] = set()
        self._added = asyncio.Event()
        self._preview: PreviewEvent | None = None
        for event in events:
            self.add(event)

    @property
    def ended(self) -> bool:
        return bool(self.events) and isinstance(self.events[-1], END_EVENTS)

    def add(self, event: JobEvent) -> None:
        if isinstance(event, PreviewEvent):
            # The newest preview replaces the others: readers that have not sent one yet skip
            # it, and its points are freed.
            if self._preview is not None:
                self._preview.preview = None
            self._preview = event
        last = self.events[-1] if self.events else None
        if _supersedes(event, last):
            self.events[-1] = event
            for reader in self._readers:  # those that had sent the old one get the new one
                if reader.position == len(self.events):
                    reader.position -= 1
        else:
            self.events.append(event)
        self._added.set()
        self._added = asyncio.Event()

    def reader(self) -> FeedReader:
        """A reader from the feed's first event."""
        reader = FeedReader(self)
        self._readers.add(reader)
        return reader


def _supersedes(event: JobEvent, last: JobEvent | None) -> bool:
    if isinstance(event, QueuedEvent):
        return isinstance(last, QueuedEvent)
    return (
        isinstance(event, ProgressEvent)
        and isinstance(last, ProgressEvent)
        and last.stage == event.stage
    )


class FeedReader:
    """One session's place in a feed."""

    def __init__(self, feed: JobFeed) -> None:
        self.feed = feed
        self.position = 0

    @property
    def behind(self) -> int:
        """Events of the feed not sent yet."""
        return len(self.feed.events) - self.position

    async def next(self) -> JobEvent:
        """The next event, once there is one (previews that a later one replaced are skipped)."""
        while True:
            while self.position >= len(self.feed.events):
                await self.feed._added.wait()
            event = self.feed.events[self.position]
            self.position += 1
            if not (isinstance(event, PreviewEvent) and event.preview is None):
                return event

    def close(self) -> None:
        self.feed._readers.discard(self)


class Follower(Protocol):
    """A session, as Sessions knows it."""

    def lose(self, job_id: str) -> None:
        """Another session of the same client attached to the job: stop following it."""


class Sessions:
    """The WebSocket sessions of one server and the jobs they follow (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._per_client: Counter[str] = Counter()
        self._feeds: dict[str, JobFeed] = {}
        self._waiting: dict[str, asyncio.TimerHandle] = {}
        self._pumps: set[asyncio.Task] = set()

    # Admission ---------------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return sum(self._per_client.values())

    def admit(self, client: str) -> tuple[str, str] | None:
        """Count a new session of ``client``; or, over a limit, the refusal (a sentence for
        people, and a short reason for the close frame, at most 123 bytes) without counting it."""
        mine, most = self._per_client[client], self.settings.max_ws_sessions_per_client
        if mine >= most:
            return (
                f"this client already has {mine} WebSocket sessions open, the limit per client "
                f"(setting max_ws_sessions_per_client = {most}); close one first",
                "too many sessions of this client (setting max_ws_sessions_per_client)",
            )
        total, most = self.total, self.settings.max_ws_sessions_total
        if total >= most:
            return (
                f"the server has {total} WebSocket sessions open, its limit "
                f"(setting max_ws_sessions_total = {most}); try again later",
                "too many sessions on this server (setting max_ws_sessions_total)",
            )
        self._per_client[client] += 1
        return None

    def leave(self, client: str) -> None:
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]

    # Jobs --------------------------------------------------------------------------------------

    def feed_for(self, job: Job) -> JobFeed:
        """The feed of an open job, started on first use: from then on it has every event."""
        feed = self._feeds.get(job.id)
        if feed is None:
            feed = self._feeds[job.id] = JobFeed(job.id)
            pump = asyncio.create_task(self._pump(job.id, feed, job.listen()))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)
        return feed

    def feed_of(self, job_id: str) -> JobFeed | None:
        """The feed of an open job followed over the WebSocket."""
        return self._feeds.get(job_id)

    async def _pump(self, job_id: str, feed: JobFeed, events: asyncio.Queue[JobEvent]) -> None:
        """Move the job's events into its feed as they come: the job's own queue stays empty."""
        try:
            while not feed.ended:
                feed.add(await events.get())
        finally:
            self._feeds.pop(job_id, None)
            waiting = self._waiting.pop(job_id, None)
            if waiting is not None:
                waiting.cancel()

    def follow(self, feed: JobFeed, follower: Follower) -> None:
        """Make ``follower`` the one session that follows the feed's job: a wait for its client
        ends, and a session that followed it before loses it."""
        waiting = self._waiting.pop(feed.job_id, None)
        if waiting is not None:
            waiting.cancel()
        previous, feed.follower = feed.follower, follower
        if previous is not None and previous is not follower:
            previous.lose(feed.job_id)

    def unfollow(self, feed: JobFeed, follower: Follower) -> None:
        if feed.follower is follower:
            feed.follower = None

    def wait_for_return(self, job_id: str, give_up: Callable[[], None]) -> None:
        """The session of an open job dropped: ``give_up`` after reattach_grace_s unless a
        session follows the job again before."""
        feed = self._feeds.get(job_id)
        if feed is None or feed.follower is not None:
            return

        def expire() -> None:
            self._waiting.pop(job_id, None)
            if feed.follower is None and not feed.ended:
                give_up()

        loop = asyncio.get_running_loop()
        earlier = self._waiting.pop(job_id, None)
        if earlier is not None:
            earlier.cancel()
        self._waiting[job_id] = loop.call_later(self.settings.reattach_grace_s, expire)

    def waiting(self, job_id: str) -> bool:
        """Whether the job waits for its client to attach again."""
        return job_id in self._waiting


def sessions_of(state: object, settings: Settings, owner: object) -> Sessions:
    """The Sessions of one running app, kept in its ``state`` (made on first use, and again for
    a new ``owner``: an app whose lifespan starts again has a new service)."""
    sessions = getattr(state, "ws_sessions", None)
    if sessions is None or getattr(state, "ws_sessions_owner", None) is not owner:
        sessions = Sessions(settings)
        state.ws_sessions = sessions  # type: ignore[attr-defined]
        state.ws_sessions_owner = owner  # type: ignore[attr-defined]
    return sessions
