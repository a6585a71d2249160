"""code/batching.py: concurrent requests gathered into one scoring call, each answered with its own row."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from batching import BatchSettings, MicroBatcher
from nostrade.scoring import CatalogueHistory, Scores


def history(marker: int) -> CatalogueHistory:
    """A stand-in history: the fake scorer below reads only ``rows``."""
    empty = np.zeros(0, np.int64)
    return CatalogueHistory(np.array([marker]), empty, empty, empty, empty)


class FakeScoring:
    """Scores each history's row from its own marker and alpha; records the histories of every call."""

    def __init__(self, fail_marker: int | None = None):
        self.calls, self.fail_marker = [], fail_marker

    def __call__(self, histories, alpha):
        markers = [int(h.rows[0]) for h in histories]
        self.calls.append((markers, alpha))
        if self.fail_marker in markers:
            raise ValueError(f"history {self.fail_marker}: cannot be scored")
        final = np.array([[m, alpha] for m in markers], np.float32)
        zeros = np.zeros_like(final)
        return Scores(final, zeros, zeros, zeros, zeros, zeros, zeros > 0, [f"path {m}" for m in markers],
                      zeros.astype(np.uint16))


async def concurrently(batcher: MicroBatcher, requests: list[tuple[int, float]]) -> list:
    return await asyncio.gather(*(batcher.scores(history(m), a) for m, a in requests), return_exceptions=True)


def test_concurrent_requests_share_one_call_and_each_gets_its_own_row():
    scoring = FakeScoring()
    answers = asyncio.run(concurrently(MicroBatcher(scoring), [(m, 0.2) for m in range(5)]))
    assert scoring.calls == [([0, 1, 2, 3, 4], 0.2)]
    for m, scored in enumerate(answers):
        assert scored.final.tolist() == [[m, pytest.approx(0.2)]] and scored.paths == [f"path {m}"]


def test_a_lone_request_is_scored_at_once_and_max_size_caps_a_call():
    scoring = FakeScoring()
    batcher = MicroBatcher(scoring, BatchSettings(max_size=3, wait_ms=1000.0))
    asyncio.run(concurrently(batcher, [(9, 0.0)]))
    answers = asyncio.run(concurrently(batcher, [(m, 0.0) for m in range(7)]))
    assert [markers for markers, _ in scoring.calls] == [[9], [0, 1, 2], [3, 4, 5], [6]]
    assert [int(a.final[0, 0]) for a in answers] == list(range(7))
    assert (batcher.counts.calls, batcher.counts.requests) == (4, 8)


def test_each_alpha_is_scored_in_its_own_call():
    scoring = FakeScoring()
    answers = asyncio.run(concurrently(MicroBatcher(scoring), [(0, 0.1), (1, 0.3), (2, 0.1)]))
    assert scoring.calls == [([0, 2], 0.1), ([1], 0.3)]
    assert [a.final[0].tolist() for a in answers] == [[0, pytest.approx(0.1)], [1, pytest.approx(0.3)],
                                                      [2, pytest.approx(0.1)]]


def test_a_history_that_fails_fails_only_its_own_request():
    scoring = FakeScoring(fail_marker=1)
    answers = asyncio.run(concurrently(MicroBatcher(scoring), [(m, 0.0) for m in range(3)]))
    assert isinstance(answers[1], ValueError) and "history 1" in str(answers[1])
    assert [int(answers[m].final[0, 0]) for m in (0, 2)] == [0, 2]
    assert scoring.calls[0][0] == [0, 1, 2] and sorted(c[0][0] for c in scoring.calls[1:]) == [0, 1, 2]


def test_no_batching_with_max_size_one_and_bad_settings_are_refused():
    scoring = FakeScoring()
    asyncio.run(concurrently(MicroBatcher(scoring, BatchSettings(max_size=1)), [(m, 0.0) for m in range(3)]))
    assert [markers for markers, _ in scoring.calls] == [[0], [1], [2]]
    with pytest.raises(ValueError, match="max_size 0"):
        MicroBatcher(scoring, BatchSettings(max_size=0))


def test_a_batch_waits_for_announced_requests_and_is_scored_even_if_its_first_request_is_cancelled():
    scoring = FakeScoring()
    batcher = MicroBatcher(scoring, BatchSettings(wait_ms=10_000.0))

    async def run():
        with batcher.announced():  # a request on its way (its body being read): the batch waits for it
            first = asyncio.create_task(batcher.scores(history(0), 0.0))
            second = asyncio.create_task(batcher.scores(history(1), 0.0))
            await asyncio.sleep(0.05)
            assert not scoring.calls and batcher.expected == 1
            first.cancel()  # its client went away while it gathered
            answer = await second
        with pytest.raises(asyncio.CancelledError):
            await first
        return answer

    answer = asyncio.run(run())
    assert scoring.calls == [([0, 1], 0.0)] and int(answer.final[0, 0]) == 1 and batcher.expected == 0
