"""Catch-up subscriptions: a stream and $all, catch-up then live, resumed from
a revision or position, filtered, with checkpoints."""

from __future__ import annotations

import uuid

from kurrentdbclient.events import CaughtUp, Checkpoint, RecordedEvent

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
    ids,
    take,
    true,
)

T = CALL_TIMEOUT


def _is_event_or_caught_up(x: object) -> bool:
    return type(x) in (RecordedEvent, CaughtUp)


@check("subscribe_stream")
def subscribe_stream(ctx: Ctx) -> None:
    c = ctx.client
    s = ctx.uniq("sub-stream")
    es = [ev(f"S{i}") for i in range(6)]
    append_each(ctx, s, es[0:2])
    ctx.step("subscribe_to_stream(s, include_caught_up=True)")
    sub = c.subscribe_to_stream(s, include_caught_up=True, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub.stop)
    got = take(sub, 3, what="catch-up of a stream subscription", accept=_is_event_or_caught_up)
    eq([type(x).__name__ for x in got], ["RecordedEvent", "RecordedEvent", "CaughtUp"],
       "stored events, then caught up")
    eq(ids(got[0:2]), ids(es[0:2]), "stored events")
    eq(got[2].stream_position, 1, "caught-up stream position (the last revision)")
    append_each(ctx, s, es[2:4], first=1)
    live = take(sub, 2, what="live events of a stream subscription", accept=_is_event_or_caught_up)
    eq([(type(x).__name__, x.id) for x in live], [("RecordedEvent", es[2].id),
                                                  ("RecordedEvent", es[3].id)], "live events")
    eq([x.stream_position for x in live], [2, 3], "live events' revisions")
    sub.stop()
    # From a revision: starts after it, no gap and no duplicate, then live.
    ctx.step("subscribe_to_stream(s, stream_position=1)")
    sub2 = c.subscribe_to_stream(s, stream_position=1, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub2.stop)
    eq(ids(take(sub2, 2, what="stream subscription from revision 1")), ids(es[2:4]),
       "events after revision 1")
    append_each(ctx, s, es[4:5], first=3)
    eq(ids(take(sub2, 1, what="live event after resuming")), [es[4].id], "live event")
    sub2.stop()
    ctx.step("subscribe_to_stream(s, from_end=True)")
    sub3 = c.subscribe_to_stream(s, from_end=True, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub3.stop)
    append_each(ctx, s, es[5:6], first=4)
    eq(ids(take(sub3, 1, what="stream subscription from the end")), [es[5].id],
       "first event of a subscription from the end")
    sub3.stop()
    # A stream that does not exist yet: the subscription waits for it.
    s2 = ctx.uniq("sub-later")
    later = ev("Later")
    ctx.step("subscribe_to_stream(not yet existing)")
    sub4 = c.subscribe_to_stream(s2, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub4.stop)
    append_each(ctx, s2, [later])
    eq(ids(take(sub4, 1, what="subscription to a stream created later")), [later.id],
       "first event of a stream created after subscribing")
    sub4.stop()


@check("subscribe_all")
def subscribe_all(ctx: Ctx) -> None:
    c = ctx.client
    es = [ev(f"A{i}") for i in range(7)]
    streams = [ctx.uniq(f"sub-all-{i}") for i in range(7)]
    cps = [append_each(ctx, streams[i], [es[i]])[0] for i in range(2)]
    ctx.step(f"subscribe_to_all(commit_position={cps[0]})")
    sub = c.subscribe_to_all(commit_position=cps[0], timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub.stop)
    eq(ids(take(sub, 1, what="$all subscription catch-up")), [es[1].id],
       "first event after the given position (exclusive)")
    cps.append(append_each(ctx, streams[2], [es[2]])[0])
    got = take(sub, 1, what="$all subscription live")
    eq(ids(got), [es[2].id], "live event")
    eq(got[0].commit_position, cps[2], "live event's commit position")
    sub.stop()
    ctx.step("subscribe_to_all(from_end=True)")
    sub2 = c.subscribe_to_all(from_end=True, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub2.stop)
    cps.append(append_each(ctx, streams[3], [es[3]])[0])
    eq(ids(take(sub2, 1, what="$all subscription from the end")), [es[3].id],
       "first event of a subscription from the end")
    sub2.stop()
    ctx.step(f"subscribe_to_all(commit_position={cps[0]}, include_caught_up=True)")
    sub3 = c.subscribe_to_all(commit_position=cps[0], include_caught_up=True,
                              timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub3.stop)
    got = take(sub3, 4, what="$all catch-up with caught-up", accept=_is_event_or_caught_up)
    eq([(type(x).__name__, x.id if type(x) is RecordedEvent else None) for x in got],
       [("RecordedEvent", es[1].id), ("RecordedEvent", es[2].id),
        ("RecordedEvent", es[3].id), ("CaughtUp", None)], "stored events, then caught up")
    true(got[3].commit_position >= cps[3],
         f"caught-up position {got[3].commit_position} covers the last event {cps[3]}")
    cps.append(append_each(ctx, streams[4], [es[4]])[0])
    eq([(type(x).__name__, x.id) for x in take(sub3, 1, what="live after caught up",
                                               accept=_is_event_or_caught_up)],
       [("RecordedEvent", es[4].id)], "live event after caught up")
    sub3.stop()
    # Resume from the last position seen: no gap, no duplicate.
    cps.append(append_each(ctx, streams[5], [es[5]])[0])
    ctx.step(f"subscribe_to_all(commit_position={cps[2]}) (resume)")
    sub4 = c.subscribe_to_all(commit_position=cps[2], timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub4.stop)
    eq(ids(take(sub4, 3, what="resumed $all subscription")), ids(es[3:6]),
       "events after the resume position")
    cps.append(append_each(ctx, streams[6], [es[6]])[0])
    eq(ids(take(sub4, 1, what="resumed $all subscription live")), [es[6].id], "live event")
    sub4.stop()


@check("subscribe_all_filtered")
def subscribe_all_filtered(ctx: Ctx) -> None:
    c = ctx.client
    u = uuid.uuid4().hex[:10]
    keep1, keep2, other = f"{u}-keep-1", f"{u}-keep-2", f"{u}-other"
    k1, k2, k3 = ev("K"), ev("K"), ev("K")
    o1, o2 = ev("O"), ev("O")
    start = c.get_commit_position(timeout=T)  # an existing position, before ours
    append_each(ctx, keep1, [k1])
    append_each(ctx, other, [o1])
    append_each(ctx, keep2, [k2])
    ctx.step(f"subscribe_to_all(commit_position=start, filter_include=['{u}-keep-'], "
             "filter_by_stream_name=True, filter_by_prefix=True)")
    sub = c.subscribe_to_all(commit_position=start, filter_include=[f"{u}-keep-"], filter_by_stream_name=True,
                             filter_by_prefix=True, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub.stop)
    eq(ids(take(sub, 2, what="prefix-filtered $all subscription catch-up")), ids([k1, k2]),
       "catch-up events of the kept streams")
    append_each(ctx, other, [o2], first=0)
    append_each(ctx, keep1, [k3], first=0)
    eq(ids(take(sub, 1, what="prefix-filtered $all subscription live")), [k3.id],
       "live event of a kept stream (the other stream's is filtered out)")
    sub.stop()
    # A regular expression on the event type.
    t = f"Rx{u}"
    r1, r2, n1 = ev(f"{t}Created"), ev(f"{t}Updated"), ev(f"{t}Ignored")
    s = ctx.uniq("sub-regex")
    rstart = c.get_commit_position(timeout=T)
    append_each(ctx, s, [r1, n1, r2])
    ctx.step(f"subscribe_to_all(filter_include=['{t}(Created|Updated)'])")
    sub2 = c.subscribe_to_all(commit_position=rstart, filter_include=[f"{t}(Created|Updated)"],
                              timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub2.stop)
    eq(ids(take(sub2, 2, what="regex-filtered $all subscription")), ids([r1, r2]),
       "events whose type matches the regex")
    sub2.stop()


@check("subscribe_all_checkpoints")
def subscribe_all_checkpoints(ctx: Ctx) -> None:
    """A filtered $all subscription surfaces checkpoints (include_checkpoints),
    and resuming from a checkpoint's position misses nothing and repeats
    nothing."""
    c = ctx.client
    u = uuid.uuid4().hex[:10]
    match, noise = f"M{u}", f"N{u}"
    s = ctx.uniq("ckpt")
    m1, m2 = ev(f"{match}-1"), ev(f"{match}-2")
    start = c.get_commit_position(timeout=T)
    cp_m1 = append_each(ctx, s, [m1])[0]
    append_each(ctx, s, [ev(noise) for _ in range(3)], first=0)
    ctx.step("subscribe_to_all(filter_include=[type prefix], filter_by_prefix=True, "
             "include_checkpoints=True, window_size=1, checkpoint_interval_multiplier=1)")
    sub = c.subscribe_to_all(commit_position=start, filter_include=[match], filter_by_prefix=True,
                             include_checkpoints=True, window_size=1,
                             checkpoint_interval_multiplier=1, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub.stop)
    seen: list[object] = []
    checkpoint: Checkpoint | None = None
    it = iter(sub)
    noise_after = 0
    while checkpoint is None:
        try:
            item = next(it)
        except Exception as e:  # noqa: BLE001
            raise CheckFailed(f"waiting for a checkpoint after {seen!r}: {describe(e)}") from e
        seen.append(item)
        if type(item) is RecordedEvent:
            true(item.type.startswith(match), f"filtered subscription delivered {item.type}")
            if noise_after == 0:  # more scanned events after the match, live
                append_each(ctx, s, [ev(noise) for _ in range(3)], first=3)
                noise_after = 3
        elif isinstance(item, Checkpoint) and any(type(x) is RecordedEvent for x in seen):
            checkpoint = item
    eq(ids(x for x in seen if type(x) is RecordedEvent), [m1.id], "events before the checkpoint")
    true(checkpoint.commit_position >= cp_m1,
         f"checkpoint {checkpoint.commit_position} after the delivered event {cp_m1}")
    sub.stop()
    cp_m2 = append_each(ctx, s, [m2], first=6)[0]
    true(checkpoint.commit_position < cp_m2,
         f"checkpoint {checkpoint.commit_position} before the next event {cp_m2}")
    ctx.step(f"subscribe_to_all(commit_position=checkpoint {checkpoint.commit_position}, same filter)")
    sub2 = c.subscribe_to_all(commit_position=checkpoint.commit_position, filter_include=[match],
                              filter_by_prefix=True, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub2.stop)
    eq(ids(take(sub2, 1, what="subscription resumed from a checkpoint")), [m2.id],
       "first event after resuming from the checkpoint")
    sub2.stop()
