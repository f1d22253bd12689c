"""Envoy's cut reports between the processes of one extproc pool, over Redis.

Envoy sends its access log (:mod:`extproc.access_log`) to one process of the pool, and the stream a report is about
may be read by another, which would then wait for Envoy's deferred_close_timeout (30 s) before it settles. So a
report no stream of its receiver waits for is published on :data:`CHANNEL`, to which every process of the pool
listens (one connection each), handing what comes to its own :class:`~extproc.stream_cuts.CutReports`: a stream
waiting there gets it at once, one that asks later finds it kept. Only cut reports go through Redis: a request
nobody cut costs Redis nothing more.

Pub/sub reaches only those listening at the time, so a process whose subscription is down (starting, or
reconnecting) would miss a report. Each report is therefore also kept under ``lime:cut:<request id>`` as long as a
stream could wait for it, and a process that (re)subscribes looks up the ones its streams are waiting for. With
Redis down nothing is relayed and a stream whose report went elsewhere settles as it did before this relay: at
deferred_close_timeout, by the same cut-off rule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import redis.asyncio as aioredis
from prometheus_client import Counter

from extproc.request_metrics import Ending
from extproc.stream_cuts import CUT_BY_CLIENT, CUT_BY_UPSTREAM, TIMED_OUT, CutReports

__all__ = ["CHANNEL", "ENDINGS", "KEY_PREFIX", "CutRelay", "decode", "encode"]

log = logging.getLogger(__name__)

#: Every process of every pool on this Redis listens here (pub/sub ignores Redis's database numbers); request ids
#: are Envoy's UUIDs, so a report meant for another pool finds no stream and is forgotten with the others.
CHANNEL = "lime:cuts"
KEY_PREFIX = "lime:cut:"
#: A kept report outlives any stream that could wait for it (extproc.server's OBSERVED_STREAM_PATIENCE_SECONDS).
KEEP_SECONDS = 30
#: One read of the subscription waits this long, so that redis-py gets to check the connection between messages
#: (its health_check_interval): a connection gone silent is found and opened again.
_LISTEN_SECONDS = 1.0
_FIRST_PAUSE_SECONDS = 0.2
_MAX_PAUSE_SECONDS = 5.0
#: Request ids looked up per MGET after a (re)subscription: one for every observed stream in flight.
_LOOKUP_BATCH = 500

#: The endings Envoy's flags give (extproc.stream_cuts), by their name on the wire.
ENDINGS = {"client": CUT_BY_CLIENT, "upstream": CUT_BY_UPSTREAM, "timeout": TIMED_OUT}
_NAMES = {ending: name for name, ending in ENDINGS.items()}

RELAY_FAILURES = Counter("lime_cut_relay_failures",
                         "Cut reports extproc could not pass to the other processes of its pool over Redis (a stream "
                         "another process reads then settles at Envoy's deferred_close_timeout)")


def encode(origin: str, request_id: str, ending: Ending) -> str:
    return json.dumps({"from": origin, "id": request_id, "ending": _NAMES[ending]})


def decode(data: bytes | str) -> tuple[str, str, Ending] | None:
    """``(origin, request_id, ending)`` of a published report; ``None`` for anything else."""
    try:
        message = json.loads(data)
        origin, request_id, ending = message["from"], message["id"], ENDINGS[message["ending"]]
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(origin, str) and isinstance(request_id, str) and request_id):
        return None
    return origin, request_id, ending


class CutRelay:
    """Takes Envoy's reports in place of ``reports`` and shares with the pool those no stream here waits for;
    :meth:`run` (a task for the process's life) listens for the others'."""

    def __init__(self, redis: aioredis.Redis, reports: CutReports, *, channel: str = CHANNEL) -> None:
        self._redis = redis
        self._reports = reports
        self._channel = channel
        #: Tells this process's own messages from the others' when they come back on the channel.
        self._origin = uuid.uuid4().hex
        self._publishing: set[asyncio.Task[None]] = set()
        #: Set while subscribed (and caught up); for tests and for whoever waits to see reports relayed.
        self.listening = asyncio.Event()

    def report(self, request_id: str, ending: Ending) -> None:
        """Envoy's report, from this process's access-log service."""
        if self._reports.report(request_id, ending):
            return
        task = asyncio.get_running_loop().create_task(self._publish(request_id, ending))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, request_id: str, ending: Ending) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(KEY_PREFIX + request_id, _NAMES[ending], ex=KEEP_SECONDS)
                pipe.publish(self._channel, encode(self._origin, request_id, ending))
                await pipe.execute()
        except (aioredis.RedisError, OSError) as error:
            RELAY_FAILURES.inc()
            log.warning("cut report of %s not relayed to the other extproc processes (%s): if one of them reads "
                        "its stream, it settles at deferred_close_timeout", request_id, error)

    def received(self, data: bytes | str) -> None:
        """A report published by a process of the pool (this one's own are already here)."""
        message = decode(data)
        if message is None:
            log.warning("ignored a message on %s that is not a cut report: %.200r", self._channel, data)
            return
        origin, request_id, ending = message
        if origin != self._origin:
            self._reports.report(request_id, ending)

    async def _catch_up(self) -> None:
        """The kept reports of the streams waiting here: those published while this process was not listening."""
        waiting = self._reports.waiting()
        for start in range(0, len(waiting), _LOOKUP_BATCH):
            batch = waiting[start:start + _LOOKUP_BATCH]
            for request_id, name in zip(batch, await self._redis.mget([KEY_PREFIX + r for r in batch]), strict=True):
                ending = ENDINGS.get(name.decode() if isinstance(name, bytes) else name) if name else None
                if ending is not None:
                    self._reports.report(request_id, ending)

    async def run(self) -> None:
        """Listen until cancelled, through Redis outages (waiting longer between tries, up to 5 s)."""
        pause = _FIRST_PAUSE_SECONDS
        failing = False
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    while True:
                        message = await pubsub.get_message(timeout=_LISTEN_SECONDS)
                        if message is None:
                            continue
                        if message["type"] == "message":
                            self.received(message["data"])
                        elif message["type"] == "subscribe":
                            # Also after redis-py reconnected and subscribed again by itself.
                            await self._catch_up()
                            self.listening.set()
                            if failing:
                                log.info("relaying cut reports between extproc processes again")
                            failing, pause = False, _FIRST_PAUSE_SECONDS
            except Exception as error:
                # Whatever went wrong, the relay must go on: without it streams only settle later.
                self.listening.clear()
                if not failing:
                    log.warning("not relaying cut reports between extproc processes (%s): until Redis is back, a "
                                "stream whose cut Envoy reports to another process settles at deferred_close_timeout",
                                error, exc_info=not isinstance(error, aioredis.RedisError | OSError))
                failing = True
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE_SECONDS)

    async def drain(self) -> None:
        """Let the reports being published go out (on shutdown)."""
        if self._publishing:
            await asyncio.wait(self._publishing, timeout=3)
