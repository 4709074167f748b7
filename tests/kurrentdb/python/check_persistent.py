"""Persistent subscriptions (consumer groups) to a stream and to $all:
create, two consumers sharing the work, ack, nack with retry and with park,
replay parked, info, list, delete."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import AlreadyExistsError, NotFoundError

from harness import (
    CALL_TIMEOUT,
    SUB_TIMEOUT,
    CheckFailed,
    Ctx,
    append_each,
    check,
    describe,
    eq,
    ev,
    raises,
    take,
    true,
    wait_until,
)

T = CALL_TIMEOUT


def _share(ctx: Ctx, subs: list[Any], expected: set[uuid.UUID], what: str) -> list[list[uuid.UUID]]:
    """Reads the consumers concurrently, acking each event, until all the
    expected events arrived; returns what each consumer got."""
    got: list[list[uuid.UUID]] = [[] for _ in subs]
    lock = threading.Lock()
    done = threading.Event()
    errors: list[str] = []

    def consume(i: int) -> None:
        try:
            for event in subs[i]:
                subs[i].ack(event)
                with lock:
                    got[i].append(event.id)
                    if expected <= {x for g in got for x in g}:
                        done.set()
                if done.is_set():
                    return
        except Exception as e:  # noqa: BLE001
            if not done.is_set():
                errors.append(f"consumer {i + 1}: {describe(e)}")
                done.set()

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(len(subs))]
    for t in threads:
        t.start()
    done.wait(SUB_TIMEOUT)
    time.sleep(0.5)  # let the acks go out (the client batches them)
    for s in subs:
        s.stop()
    for t in threads:
        t.join(5)
    if errors:
        raise CheckFailed(f"{what}: {'; '.join(errors)} (received so far: {got})")
    if not done.is_set():
        raise CheckFailed(f"{what}: not all events within {SUB_TIMEOUT}s (received: {got})")
    return got


def _check_round_robin(got: list[list[uuid.UUID]], order: list[uuid.UUID], what: str) -> None:
    """RoundRobin over two consumers that were both connected before the
    events were written: each event delivered once, alternately (KurrentDB
    gives the first consumer events 1, 3, 5… and the second 2, 4, 6…)."""
    everything = [x for g in got for x in g]
    eq(sorted(map(str, everything)), sorted(map(str, order)),
       f"{what}: every event delivered once over the two consumers")
    eq(sorted([set(map(str, g)) for g in got], key=lambda x: sorted(x)),
       sorted([set(map(str, order[0::2])), set(map(str, order[1::2]))], key=lambda x: sorted(x)),
       f"{what}: events dealt alternately to the two consumers")


def _retry_and_park(ctx: Ctx, sub: Any, append: Any, info: Any, replay: Any) -> None:
    """On one open consumer: a nack with retry redelivers the event; a nack
    with park parks it, replay brings it back."""
    x = ev("RetryMe")
    append(x)
    ctx.step("persistent: receive the event, nack(action='retry')")
    (first,) = take(sub, 1, what="event before the retry")
    eq((first.id, first.retry_count), (x.id, 0), "first delivery (id, retry_count)")
    sub.nack(first, action="retry")
    (again,) = take(sub, 1, what="redelivery after nack retry")
    eq((again.id, again.retry_count), (x.id, 1), "redelivery after retry (id, retry_count)")
    sub.ack(again)
    y = ev("ParkMe")
    append(y)
    ctx.step("persistent: receive the event, nack(action='park')")
    (p,) = take(sub, 1, what="event to park")
    eq(p.id, y.id, "event to park")
    sub.nack(p, action="park")
    ctx.step("get_subscription_info(): parked_message_count")
    wait_until(lambda: info().parked_message_count == 1, 5, "one parked message in the info")
    ctx.step("replay_parked_events()")
    replay()
    (r,) = take(sub, 1, what="parked event replayed")
    eq(r.id, y.id, "replayed event")
    sub.ack(r)
    wait_until(lambda: info().parked_message_count == 0, 5, "no parked message after replay")


@check("persistent_stream")
def persistent_stream(ctx: Ctx) -> None:
    c = ctx.client
    g, s = ctx.uniq("group"), ctx.uniq("ps")
    ctx.step("get_subscription_info(g, s) before create")
    raises(NotFoundError, lambda: c.get_subscription_info(g, s, timeout=T), "info before create")
    ctx.step("list_subscriptions_to_stream(s) before create")
    eq(c.list_subscriptions_to_stream(s, timeout=T), [], "subscriptions of the stream before")
    ctx.step("create_subscription_to_stream(g, s, consumer_strategy='RoundRobin')")
    c.create_subscription_to_stream(g, s, consumer_strategy="RoundRobin", timeout=T)
    ctx.step("create_subscription_to_stream(g, s) again")
    raises(AlreadyExistsError, lambda: c.create_subscription_to_stream(g, s, timeout=T),
           "second create of the same group")
    ctx.step("get_subscription_info(g, s)")
    info = c.get_subscription_info(g, s, timeout=T)
    eq((info.group_name, info.event_source, info.consumer_strategy, info.max_retry_count,
        info.message_timeout), (g, s, "RoundRobin", 10, 30.0), "subscription info")
    ctx.step("list_subscriptions_to_stream(s)")
    eq([(i.group_name, i.event_source) for i in c.list_subscriptions_to_stream(s, timeout=T)],
       [(g, s)], "subscriptions of the stream")
    ctx.step("list_subscriptions()")
    true((s, g) in {(i.event_source, i.group_name) for i in c.list_subscriptions(timeout=T)},
         "the group is in list_subscriptions()")
    ctx.step("read_subscription_to_stream(g, s) twice (two consumers)")
    c1 = c.read_subscription_to_stream(g, s, timeout=SUB_TIMEOUT)
    c2 = c.read_subscription_to_stream(g, s, timeout=SUB_TIMEOUT)
    ctx.cleanup += [c1.stop, c2.stop]
    es = [ev(f"P{i}") for i in range(6)]
    append_each(ctx, s, es)
    got = _share(ctx, [c1, c2], {e.id for e in es}, "two consumers of a stream group")
    _check_round_robin(got, [e.id for e in es], "stream group")
    ctx.step("read_subscription_to_stream(g, s): a third consumer")
    c3 = c.read_subscription_to_stream(g, s, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(c3.stop)
    rev = [5]

    def append(e: Any) -> None:
        append_each(ctx, s, [e], first=rev[0])
        rev[0] += 1

    _retry_and_park(ctx, c3, append, lambda: c.get_subscription_info(g, s, timeout=T),
                    lambda: c.replay_parked_events(g, s, timeout=T))
    c3.stop()
    ctx.step("delete_subscription(g, s)")
    c.delete_subscription(g, s, timeout=T)
    ctx.step("get_subscription_info(g, s) after delete")
    raises(NotFoundError, lambda: c.get_subscription_info(g, s, timeout=T), "info after delete")
    ctx.step("list_subscriptions_to_stream(s) after delete")
    eq(c.list_subscriptions_to_stream(s, timeout=T), [], "subscriptions of the stream after delete")
    ctx.step("delete_subscription(g, s) again")
    raises(NotFoundError, lambda: c.delete_subscription(g, s, timeout=T), "second delete")


@check("persistent_all")
def persistent_all(ctx: Ctx) -> None:
    c = ctx.client
    g = ctx.uniq("group-all")
    u = uuid.uuid4().hex[:10]
    ctx.step("get_subscription_info(g) before create")
    raises(NotFoundError, lambda: c.get_subscription_info(g, timeout=T), "info before create")
    ctx.step(f"create_subscription_to_all(g, from_end=True, filter_include=['{u}-.*'], "
             "filter_by_stream_name=True, consumer_strategy='RoundRobin')")
    c.create_subscription_to_all(g, from_end=True, filter_include=[f"{u}-.*"],
                                 filter_by_stream_name=True, consumer_strategy="RoundRobin",
                                 timeout=T)
    ctx.step("get_subscription_info(g)")
    info = c.get_subscription_info(g, timeout=T)
    eq((info.group_name, info.event_source, info.consumer_strategy), (g, "$all", "RoundRobin"),
       "subscription info")
    ctx.step("list_subscriptions()")
    true(("$all", g) in {(i.event_source, i.group_name) for i in c.list_subscriptions(timeout=T)},
         "the group is in list_subscriptions()")
    ctx.step("read_subscription_to_all(g) twice (two consumers)")
    c1 = c.read_subscription_to_all(g, timeout=SUB_TIMEOUT)
    c2 = c.read_subscription_to_all(g, timeout=SUB_TIMEOUT)
    ctx.cleanup += [c1.stop, c2.stop]
    wanted = [ev(f"W{i}") for i in range(4)]
    append_each(ctx, ctx.uniq("not-in-filter"), [ev("Noise")])
    append_each(ctx, f"{u}-a", wanted[0:2])
    append_each(ctx, ctx.uniq("not-in-filter"), [ev("Noise")])
    append_each(ctx, f"{u}-b", wanted[2:4])
    got = _share(ctx, [c1, c2], {e.id for e in wanted}, "two consumers of an $all group")
    _check_round_robin(got, [e.id for e in wanted], "$all group (stream-name filter)")
    ctx.step("read_subscription_to_all(g): a third consumer")
    c3 = c.read_subscription_to_all(g, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(c3.stop)
    s3 = f"{u}-c"
    rev: list[Any] = [None]

    def append(e: Any) -> None:
        append_each(ctx, s3, [e], first=StreamState.NO_STREAM if rev[0] is None else rev[0])
        rev[0] = 0 if rev[0] is None else rev[0] + 1

    _retry_and_park(ctx, c3, append, lambda: c.get_subscription_info(g, timeout=T),
                    lambda: c.replay_parked_events(g, timeout=T))
    c3.stop()
    ctx.step("delete_subscription(g)")
    c.delete_subscription(g, timeout=T)
    ctx.step("get_subscription_info(g) after delete")
    raises(NotFoundError, lambda: c.get_subscription_info(g, timeout=T), "info after delete")
    ctx.step("list_subscriptions() after delete")
    true(("$all", g) not in {(i.event_source, i.group_name)
                             for i in c.list_subscriptions(timeout=T)},
         "the deleted group is no longer in list_subscriptions()")
    ctx.step("delete_subscription(g) again")
    raises(NotFoundError, lambda: c.delete_subscription(g, timeout=T), "second delete")
