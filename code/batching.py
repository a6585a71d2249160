"""Micro-batching for the HTTP service: concurrent /recommend requests scored in one model call.

    batcher = MicroBatcher(rec.scores, BatchSettings(max_size=32, wait_ms=2.0))
    scored = await batcher.scores(history, alpha)     # this history's row of one batched Scoring.scores call

The scoring endpoints run on the event loop (api.py says why), so requests that arrive together wait for each
other anyway; gathered, they share one model call, which costs much less per history than one call each (the
ranker's generators, LightGBM and SASRec's forward pass all take B rows). The first request of a batch yields
to the event loop ``GATHER_POLLS`` times (each pass reads the sockets: requests that came in meanwhile are
``announced`` by api.py in their first step, before their body is read and validated), then waits while announced
requests are still on their way, at most ``wait_ms``: a lone request waits a few loop passes, microseconds. A call
scores at most ``max_size`` histories, all of one alpha. (Serving the ranker on 1 worker, 8 requests in flight:
1 pass gathered 3.1 requests a call, 8 passes 7.0, with 21% less server CPU a request: benchmarks/load.py,
artifacts/bench/api_load-ranker-gather-1-pass.json and -8-passes.json.)

Every row of a batched call is that history's own (nostrade.scoring scores each row from its history alone;
tests/test_batching.py and test_api.py check batched answers against one-by-one ones). Where a batched call
raises, each of its requests is scored alone, so one bad history fails only its own request.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from nostrade.scoring import CatalogueHistory, Scores

DEFAULT_MAX_SIZE = 32
DEFAULT_WAIT_MS = 5.0
GATHER_POLLS = 8  # event loop passes the first request of a batch yields


@dataclass(frozen=True)
class BatchSettings:
    max_size: int = DEFAULT_MAX_SIZE  # requests scored in one call at most (1: no batching)
    wait_ms: float = DEFAULT_WAIT_MS  # the longest a batch's first request waits for others


@dataclass
class Ticket:
    """A request announced to the batcher; ``arrived`` once its history is submitted."""
    arrived: bool = False


@dataclass
class Pending:
    history: CatalogueHistory
    alpha: float
    answer: asyncio.Future


@dataclass
class BatchCounts:
    """What the batcher did: scoring calls and the requests they scored (their ratio: the mean batch size)."""
    calls: int = 0
    requests: int = 0


class MicroBatcher:
    def __init__(self, score: Callable[[Sequence[CatalogueHistory], float], Scores],
                 settings: BatchSettings = BatchSettings()):
        if settings.max_size < 1 or settings.wait_ms < 0:
            raise ValueError(f"micro-batching: max_size {settings.max_size} must be at least 1 and wait_ms "
                             f"{settings.wait_ms} at least 0")
        self.score, self.settings = score, settings
        self.pending: list[Pending] = []
        self.expected = 0  # requests announced that have not submitted their history (nor finished) yet
        self.counts = BatchCounts()

    @contextmanager
    def announced(self) -> Iterator[Ticket]:
        """Around a request that will (most likely) submit a history: a batch being gathered waits for it."""
        ticket = Ticket()
        self.expected += 1
        try:
            yield ticket
        finally:
            if not ticket.arrived:  # refused before scoring (a 422, a 400, an unknown user)
                self.expected -= 1

    async def scores(self, history: CatalogueHistory, alpha: float, ticket: Ticket | None = None) -> Scores:
        """This history's scores (one row), from a call shared with the requests that came in meanwhile."""
        if ticket is not None and not ticket.arrived:
            ticket.arrived, self.expected = True, self.expected - 1
        answer = asyncio.get_running_loop().create_future()
        self.pending.append(Pending(history, alpha, answer))
        if len(self.pending) == 1:  # the first of a batch gathers it, and scores it even if it is cancelled
            try:
                await self._gather()
            finally:
                self._flush()
        return await answer

    async def _gather(self) -> None:
        """Yield to the event loop ``GATHER_POLLS`` times, then while announced requests are on their way, up to
        ``max_size`` requests and ``wait_ms``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.wait_ms / 1000
        for _ in range(GATHER_POLLS):
            await asyncio.sleep(0)
        while self.expected > 0 and len(self.pending) < self.settings.max_size and loop.time() < deadline:
            await asyncio.sleep(0)

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        for alpha in dict.fromkeys(p.alpha for p in batch):
            group, size = [p for p in batch if p.alpha == alpha], self.settings.max_size
            for start in range(0, len(group), size):
                self._answer(group[start:start + size], alpha)

    def _answer(self, group: list[Pending], alpha: float) -> None:
        try:
            scored = self.score([p.history for p in group], alpha)
        except Exception as err:  # noqa: BLE001 - handed to the request it belongs to
            if len(group) > 1:  # one call each: only the history that fails fails its request
                for p in group:
                    self._answer([p], alpha)
            elif not group[0].answer.done():
                group[0].answer.set_exception(err)
            return
        self.counts.calls += 1
        self.counts.requests += len(group)
        for row, p in enumerate(group):
            if not p.answer.done():  # a request cancelled meanwhile (its client went away) takes no answer
                p.answer.set_result(scored.take([row]))
