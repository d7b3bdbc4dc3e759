"""The byte budget (app/web/budget.py): checked and taken in one step, never over its cap,
no deadlock when every holder waits for more, and a short disk refused at once."""

from __future__ import annotations

import random

import anyio
import pytest

from app.web.budget import Budget
from app.web.errors import Refusal

KiB = 1024


def test_many_concurrent_takers_never_pass_the_cap():
    budget = Budget(cap=256 * KiB, min_free=0, free_bytes=lambda: 1 << 40)
    peak, outcomes = 0, []

    async def request(size: int) -> None:
        nonlocal peak
        ticket = budget.open()
        try:
            for _ in range(size // (16 * KiB)):
                await budget.take(ticket, 16 * KiB, wait=5)
                peak = max(peak, budget.pending)
                budget.landed(ticket, 16 * KiB)
                await anyio.sleep(random.random() / 100)
            outcomes.append(200)
        except Refusal as exc:
            outcomes.append(exc.status)
        finally:
            budget.close(ticket)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(request, random.choice([64, 128, 192]) * KiB)

    anyio.run(main)
    assert peak <= 256 * KiB
    assert set(outcomes) <= {200, 429} and outcomes.count(200) >= 1
    assert budget.pending == 0


def test_holders_that_all_wait_refuse_the_youngest():
    budget = Budget(cap=100, min_free=0, free_bytes=lambda: 1 << 40)
    results: dict[int, object] = {}

    async def request(name: int) -> None:
        ticket = budget.open()
        try:
            await budget.take(ticket, 40, wait=30)
            await anyio.sleep(0.05)  # all three hold 40 (the third waits) before asking more
            await budget.take(ticket, 40, wait=30)
            results[name] = 200
        except Refusal as exc:
            results[name] = exc.status
        finally:
            budget.close(ticket)

    async def main() -> None:
        with anyio.fail_after(10):  # a deadlock would wait the full 30 s
            async with anyio.create_task_group() as tg:
                for name in range(3):
                    tg.start_soon(request, name)
                    await anyio.sleep(0.01)

    anyio.run(main)
    assert results[0] == 200 and 429 in results.values()


def test_short_disk_is_507_at_once_and_counts_unwritten_bytes():
    free = [10_000]
    budget = Budget(cap=1 << 30, min_free=1_000, free_bytes=lambda: free[0])

    async def main() -> None:
        ticket = budget.open()
        await budget.take(ticket, 7_000, wait=30)  # 7000 + 1/8 fits above 1000 free
        with anyio.fail_after(1), pytest.raises(Refusal) as refused:
            await budget.take(ticket, 1_200, wait=30)  # the 7000 not yet written still count
        assert refused.value.status == 507
        budget.close(ticket)

    anyio.run(main)
