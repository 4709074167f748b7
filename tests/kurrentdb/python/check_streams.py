"""Connection, append, read (stream and $all, filtered), delete, tombstone."""

from __future__ import annotations

import datetime
import uuid

from kurrentdbclient import DEFAULT_EXCLUDE_FILTER, StreamState
from kurrentdbclient.exceptions import (
    FailedPreconditionError,
    KurrentDBClientError,
    NotFoundError,
    ServiceUnavailableError,
    StreamIsDeletedError,
    UnauthenticatedError,
    WrongCurrentVersionError,
)
from kurrentdbclient.gossip import NODE_STATE_LEADER

from harness import (
    CALL_TIMEOUT,
    Ctx,
    append_each,
    check,
    eq,
    ev,
    ids,
    raises,
    true,
    utcnow,
)

T = CALL_TIMEOUT
NO, ANY, EXISTS = StreamState.NO_STREAM, StreamState.ANY, StreamState.EXISTS


@check("connect")
def connect(ctx: Ctx) -> None:
    c = ctx.client
    ctx.step("read_gossip()")
    members = c.read_gossip(timeout=T)
    eq(len(members), 1, "gossip members")
    eq(members[0].state, NODE_STATE_LEADER, "gossip member state")
    eq((members[0].address, members[0].port), ("127.0.0.1", ctx.target.port),
       "gossip member endpoint (the address the client used)")
    missing = ctx.uniq("missing")
    ctx.step(f"get_stream({missing!r})")
    raises(NotFoundError, lambda: c.get_stream(missing, timeout=T), "read of a missing stream")
    ctx.step("get_commit_position()")
    eq(type(c.get_commit_position(timeout=T)), int, "get_commit_position() type")
    # The discover scheme: the client reads gossip first and picks the leader.
    discover_url = ctx.target.url.replace("kurrentdb://", "kurrentdb+discover://", 1)
    ctx.step(f"KurrentDBClient({discover_url.split('@')[-1]!r}) then append and read")
    cd = ctx.new_client(discover_url)
    s = ctx.uniq("discover")
    e = ev("Discovered")
    cp = cd.append_to_stream(s, events=e, current_version=NO, timeout=T)
    eq([(r.id, r.commit_position) for r in cd.get_stream(s, timeout=T)], [(e.id, cp)],
       "append and read through a client that discovered the leader by gossip")
    if ctx.target.tls:
        # The CA given as root_certificates (what eventsourcing-kurrentdb's
        # KURRENTDB_ROOT_CERTIFICATES does) instead of tlsCaFile.
        assert ctx.target.ca is not None
        with open(ctx.target.ca) as f:
            pem = f.read()
        ctx.step("KurrentDBClient(url without tlsCaFile, root_certificates=CA)")
        c2 = ctx.new_client(ctx.target.url_without_ca(), root_certificates=pem)
        raises(NotFoundError, lambda: c2.get_stream(missing, timeout=T),
               "read through a client given the CA as root_certificates")
        ctx.step("get_stream with wrong password credentials")
        bad = c.construct_call_credentials("admin", "not-the-password")
        raises(UnauthenticatedError, lambda: c.get_stream(missing, timeout=T, credentials=bad),
               "read with a wrong password")
        ctx.step("KurrentDBClient(url without tlsCaFile), no CA: server cert not trusted")
        c3 = ctx.new_client(ctx.target.url_without_ca())
        raises(ServiceUnavailableError, lambda: c3.get_stream(missing, timeout=5),
               "read through a client that does not trust the server's CA")
    else:
        eq(c.construct_call_credentials("admin", "changeit"), None,
           "call credentials over plain text (the client sends none)")


@check("append_one")
def append_one(ctx: Ctx) -> None:
    """One NewEvent per call (the `Append` rpc) with every expected-version form."""
    c = ctx.client
    s = ctx.uniq("append-one")
    e1 = ev("OrderCreated", metadata=b'{"m": 1}')
    e2, e3, e4 = ev("OrderUpdated"), ev("OrderUpdated"), ev("OrderClosed")
    ctx.step("append_to_stream(missing, current_version=1)")
    err = raises(WrongCurrentVersionError,
                 lambda: c.append_to_stream(s, events=e1, current_version=1, timeout=T),
                 "exact revision on a missing stream")
    eq(err.args[0], f"Stream {s!r} does not exist", "message")
    eq(err.actual_version, NO, "actual_version")  # type: ignore[attr-defined]
    ctx.step("append_to_stream(missing, current_version=EXISTS)")
    raises(WrongCurrentVersionError,
           lambda: c.append_to_stream(s, events=e1, current_version=EXISTS, timeout=T),
           "EXISTS on a missing stream")
    cp0 = c.get_commit_position(timeout=T)
    before = utcnow()
    ctx.step("append_to_stream(s, e1, NO_STREAM)")
    cp1 = c.append_to_stream(s, events=e1, current_version=NO, timeout=T)
    after = utcnow()
    true(cp1 > cp0, f"commit position {cp1} after append > {cp0} before")
    eq(c.get_current_version(s, timeout=T), 0, "current version")
    (r1,) = c.get_stream(s, timeout=T)
    eq((r1.type, r1.data, r1.metadata, r1.content_type, r1.id, r1.stream_name,
        r1.stream_position, r1.commit_position),
       (e1.type, e1.data, e1.metadata, "application/json", e1.id, s, 0, cp1), "recorded event")
    true(r1.recorded_at is not None
         and before - datetime.timedelta(seconds=2) <= r1.recorded_at
         <= after + datetime.timedelta(seconds=2),
         f"recorded_at {r1.recorded_at} within the append's wall-clock window "
         f"[{before}, {after}] (±2s)")
    ctx.step("append_to_stream(s, e2, NO_STREAM) on an existing stream")
    err = raises(WrongCurrentVersionError,
                 lambda: c.append_to_stream(s, events=e2, current_version=NO, timeout=T),
                 "NO_STREAM on an existing stream")
    eq(err.args[0], "Stream position of last event is 0 not StreamState.NO_STREAM", "message")
    eq(err.actual_version, 0, "actual_version")  # type: ignore[attr-defined]
    ctx.step("append_to_stream(s, e2, 0)")
    cp2 = c.append_to_stream(s, events=e2, current_version=0, timeout=T)
    true(cp2 > cp1, "commit positions increase")
    ctx.step("append_to_stream(s, e3, 0) (stale revision)")
    err = raises(WrongCurrentVersionError,
                 lambda: c.append_to_stream(s, events=e3, current_version=0, timeout=T),
                 "stale exact revision")
    eq(err.args[0], "Stream position of last event is 1 not 0", "message")
    ctx.step("append_to_stream(s, e3, EXISTS)")
    cp3 = c.append_to_stream(s, events=e3, current_version=EXISTS, timeout=T)
    ctx.step("append_to_stream(s, e4, ANY)")
    cp4 = c.append_to_stream(s, events=e4, current_version=ANY, timeout=T)
    true(cp1 < cp2 < cp3 < cp4, f"commit positions increase: {[cp1, cp2, cp3, cp4]}")
    got = c.get_stream(s, timeout=T)
    eq(ids(got), ids([e1, e2, e3, e4]), "stream ids")
    eq([r.stream_position for r in got], [0, 1, 2, 3], "stream positions")
    eq([r.commit_position for r in got], [cp1, cp2, cp3, cp4], "commit positions of the events")
    s2 = ctx.uniq("append-one-any")
    e5 = ev("Created")
    ctx.step("append_to_stream(new stream, ANY)")
    cp5 = c.append_to_stream(s2, events=e5, current_version=ANY, timeout=T)
    eq([(r.id, r.stream_position, r.commit_position) for r in c.get_stream(s2, timeout=T)],
       [(e5.id, 0, cp5)], "ANY on a new stream")
    ctx.step(f"read_all(commit_position={cp2}, limit=1) (position returned by append)")
    eq(ids(c.read_all(commit_position=cp2, limit=1, timeout=T)), [e2.id],
       "the event at the commit position append returned")


@check("append_one_idempotent")
def append_one_idempotent(ctx: Ctx) -> None:
    c = ctx.client
    s = ctx.uniq("idem-one")
    e1, e2, e3 = ev("A"), ev("B"), ev("C")
    cp1, cp2, cp3 = append_each(ctx, s, [e1, e2, e3])
    for e, expected, cp in ((e1, NO, cp1), (e2, 0, cp2), (e3, 1, cp3), (e3, ANY, cp3)):
        ctx.step(f"append_to_stream(s, same event {e.type} again, current_version={expected})")
        eq(c.append_to_stream(s, events=e, current_version=expected, timeout=T), cp,
           f"commit position of an idempotent retry of {e.type} with {expected}")
    eq(ids(c.get_stream(s, timeout=T)), ids([e1, e2, e3]), "stream after retries (nothing twice)")


@check("append_many")
def append_many(ctx: Ctx) -> None:
    """Several events in one call (the client sends them with `BatchAppend`)."""
    c = ctx.client
    s = ctx.uniq("append-many")
    es = [ev(f"E{i}") for i in range(10)]
    ctx.step("append_to_stream(missing, [e0, e1], current_version=1)")
    raises(WrongCurrentVersionError,
           lambda: c.append_to_stream(s, events=es[0:2], current_version=1, timeout=T),
           "exact revision on a missing stream")
    ctx.step("append_to_stream(missing, [e0, e1], current_version=EXISTS)")
    raises(WrongCurrentVersionError,
           lambda: c.append_to_stream(s, events=es[0:2], current_version=EXISTS, timeout=T),
           "EXISTS on a missing stream")
    cp0 = c.get_commit_position(timeout=T)
    ctx.step("append_to_stream(s, [e0, e1], NO_STREAM)")
    cp_a = c.append_to_stream(s, events=es[0:2], current_version=NO, timeout=T)
    got = c.get_stream(s, timeout=T)
    eq(ids(got), ids(es[0:2]), "stream ids")
    true(cp0 < got[0].commit_position < cp_a, "first event before the returned position")
    eq(got[1].commit_position, cp_a, "returned commit position is the last event's")
    eq(c.get_commit_position(timeout=T), cp_a, "get_commit_position() after the append")
    ctx.step("append_to_stream(s, [e2, e3], NO_STREAM) on an existing stream")
    raises(WrongCurrentVersionError,
           lambda: c.append_to_stream(s, events=es[2:4], current_version=NO, timeout=T),
           "NO_STREAM on an existing stream")
    ctx.step("append_to_stream(s, [e2, e3], 10)")
    err = raises(WrongCurrentVersionError,
                 lambda: c.append_to_stream(s, events=es[2:4], current_version=10, timeout=T),
                 "wrong exact revision")
    eq(err.actual_version, 1, "actual_version")  # type: ignore[attr-defined]
    eq(len(c.get_stream(s, timeout=T)), 2, "nothing written by the failed appends")
    ctx.step("append_to_stream(s, [e2, e3], 1)")
    cp_b = c.append_to_stream(s, events=es[2:4], current_version=1, timeout=T)
    ctx.step("append_to_stream(s, [e4, e5], EXISTS)")
    cp_c = c.append_to_stream(s, events=es[4:6], current_version=EXISTS, timeout=T)
    ctx.step("append_to_stream(s, [e6, e7], ANY)")
    cp_d = c.append_to_stream(s, events=es[6:8], current_version=ANY, timeout=T)
    true(cp_a < cp_b < cp_c < cp_d, "commit positions increase")
    # Idempotent retries: same ids, nothing written twice, same position.
    ctx.step("append_to_stream(s, [e2, e3], 1) again (idempotent)")
    eq(c.append_to_stream(s, events=es[2:4], current_version=1, timeout=T), cp_b,
       "position of an idempotent retry with the exact revision")
    ctx.step("append_to_stream(s, [e6, e7], ANY) again (idempotent)")
    eq(c.append_to_stream(s, events=es[6:8], current_version=ANY, timeout=T), cp_d,
       "position of an idempotent retry with ANY")
    got = c.get_stream(s, timeout=T)
    eq(ids(got), ids(es[0:8]), "stream ids (nothing twice, nothing of the conflicts)")
    eq([r.stream_position for r in got], list(range(8)), "stream positions")
    eq([got[i].commit_position for i in (1, 3, 5, 7)], [cp_a, cp_b, cp_c, cp_d],
       "each append's position is its last event's")


@check("append_ids_reused")
def append_ids_reused(ctx: Ctx) -> None:
    """Ids already in the stream, not as a retry: a stale revision is a wrong
    expected version, as in KurrentDB. At the right revision KurrentDB writes
    the events again; Strata does not, by its documented difference
    (docs/KURRENTDB.md: an event id is unique in the whole store), and
    refuses the append with ALREADY_EXISTS, writing nothing."""
    c = ctx.client
    s = ctx.uniq("ids-reused")
    e1, e2, e3, e4 = ev("I1"), ev("I2"), ev("I3"), ev("I4")
    append_each(ctx, s, [e1, e2, e3])
    ctx.step("append_to_stream(s, [e2, e3, e4], 0) (two old ids and a new one, stale revision)")
    raises(WrongCurrentVersionError,
           lambda: c.append_to_stream(s, events=[e2, e3, e4], current_version=0, timeout=T),
           "old ids plus a new one at a stale revision")
    eq(ids(c.get_stream(s, timeout=T)), ids([e1, e2, e3]), "nothing written by the conflict")
    ctx.step("append_to_stream(s, [e2, e3, e4], 2) (old ids at the current revision)")
    try:
        c.append_to_stream(s, events=[e2, e3, e4], current_version=2, timeout=T)
    except KurrentDBClientError as err:
        true("ALREADY_EXISTS" in str(err), f"refused as ALREADY_EXISTS, not {err!r}")
    else:
        raise AssertionError("reused ids at the current revision were accepted")
    eq(ids(c.get_stream(s, timeout=T)), ids([e1, e2, e3]), "nothing written by the refusal")


@check("read_stream")
def read_stream(ctx: Ctx) -> None:
    c = ctx.client
    s = ctx.uniq("read-stream")
    es = [ev(f"R{i}") for i in range(5)]
    append_each(ctx, s, es)
    cases = [
        ({}, [0, 1, 2, 3, 4]),
        ({"stream_position": 2}, [2, 3, 4]),
        ({"backwards": True}, [4, 3, 2, 1, 0]),
        ({"stream_position": 2, "backwards": True}, [2, 1, 0]),
        ({"limit": 2}, [0, 1]),
        ({"backwards": True, "limit": 2}, [4, 3]),
        ({"stream_position": 1, "limit": 2}, [1, 2]),
        ({"stream_position": 3, "backwards": True, "limit": 2}, [3, 2]),
        ({"stream_position": 4, "limit": 10}, [4]),
        ({"stream_position": 5}, []),
    ]
    for kwargs, expected in cases:
        ctx.step(f"get_stream(s, **{kwargs})")
        got = c.get_stream(s, timeout=T, **kwargs)
        eq([(r.id, r.stream_position) for r in got], [(es[i].id, i) for i in expected],
           f"get_stream(**{kwargs})")
    ctx.step("read_stream(s) iterated, stopped after 2")
    with c.read_stream(s, timeout=T) as resp:
        first = [next(resp).id, next(resp).id]
    eq(first, ids(es[0:2]), "first two of a read_stream() iterator")
    eq(c.get_current_version(s, timeout=T), 4, "get_current_version")
    missing = ctx.uniq("read-missing")
    eq(c.get_current_version(missing, timeout=T), NO, "get_current_version of a missing stream")
    for kwargs in ({}, {"backwards": True}, {"stream_position": 1}, {"limit": 10}):
        ctx.step(f"get_stream(missing, **{kwargs})")
        raises(NotFoundError, lambda: c.get_stream(missing, timeout=T, **kwargs),
               f"read of a missing stream with {kwargs}")
    ctx.step("iterate read_stream(missing)")
    raises(NotFoundError, lambda: list(c.read_stream(missing, timeout=T)),
           "iterating read_stream() of a missing stream")


@check("read_all")
def read_all(ctx: Ctx) -> None:
    c = ctx.client
    sa, sb = ctx.uniq("all-a"), ctx.uniq("all-b")
    a = [ev(f"A{i}") for i in range(3)]
    b = [ev(f"B{i}") for i in range(3)]
    cpa = append_each(ctx, sa, a)
    cpb = append_each(ctx, sb, b)
    mine = a + b
    cps = cpa + cpb
    true(cps == sorted(cps) and len(set(cps)) == 6, f"positions increase: {cps}")

    def read(**kw: object) -> list[uuid.UUID]:
        ctx.step(f"read_all(**{kw})")
        return ids(c.read_all(timeout=T, **kw))  # type: ignore[arg-type]

    eq(read(commit_position=cpa[0]), ids(mine), "forwards from the first event's position")
    eq(read(commit_position=cpb[2]), [b[2].id], "forwards from the last event's position")
    eq(read(commit_position=cpa[0], limit=3), ids(a), "forwards from a position, limit 3")
    eq(read(commit_position=cpa[1], limit=2), ids(a[1:3]), "forwards from a middle position")
    eq(read(backwards=True, limit=3), ids(reversed(b)), "backwards from the end, limit 3")
    eq(read(commit_position=cpb[0], backwards=True, limit=3), ids(reversed(a)),
       "backwards from a position (exclusive), limit 3")
    eq(read(commit_position=cpa[1], backwards=True, limit=1), [a[0].id],
       "backwards from a middle position, limit 1")
    # Paging backwards by the position of the last event got.
    ctx.step("read_all(backwards=True, limit=2) then from its last position")
    page1 = list(c.read_all(backwards=True, limit=2, timeout=T))
    page2 = list(c.read_all(commit_position=page1[-1].commit_position, backwards=True,
                            limit=2, timeout=T))
    eq(ids(page1 + page2), [b[2].id, b[1].id, b[0].id, a[2].id], "two backward pages")
    ctx.step("read_all() whole, forwards and backwards")
    fwd = list(c.read_all(timeout=T))
    bwd = list(c.read_all(backwards=True, timeout=T))
    eq(ids(fwd[-6:]), ids(mine), "the last six events of $all forwards")
    eq(ids(bwd[:6]), ids(reversed(mine)), "the first six events of $all backwards")
    eq(ids(bwd), ids(reversed(fwd)), "$all backwards is $all forwards reversed")
    fpos = [e.commit_position for e in fwd]
    true(all(x < y for x, y in zip(fpos, fpos[1:])), "forward positions strictly increase")
    eq([(e.stream_name, e.stream_position, e.commit_position) for e in fwd[-6:]],
       [(sa, 0, cpa[0]), (sa, 1, cpa[1]), (sa, 2, cpa[2]),
        (sb, 0, cpb[0]), (sb, 1, cpb[1]), (sb, 2, cpb[2])], "stream names, revisions, positions")
    eq(read(limit=2), ids(fwd[:2]), "forwards from the start, limit 2")
    eq(c.get_commit_position(timeout=T), cpb[2], "get_commit_position()")


@check("read_all_filtered")
def read_all_filtered(ctx: Ctx) -> None:
    c = ctx.client
    u = uuid.uuid4().hex[:10]
    o1, o2, i1 = f"{u}-order-1", f"{u}-order-2", f"{u}-invoice-1"
    oc1, ou1 = ev(f"T{u}OrderCreated"), ev(f"T{u}OrderUpdated")
    oc2 = ev(f"T{u}OrderCreated")
    ic1, x1 = ev(f"T{u}InvoiceCreated"), ev(f"X{u}Other")
    start = append_each(ctx, o1, [oc1, ou1])[0]
    append_each(ctx, o2, [oc2])
    append_each(ctx, i1, [ic1, x1])

    def read(**kw: object) -> list[uuid.UUID]:
        ctx.step(f"read_all(**{kw})")
        return ids(c.read_all(timeout=T, **kw))  # type: ignore[arg-type]

    eq(read(commit_position=start, filter_include=[f"{u}-order-"], filter_by_stream_name=True,
            filter_by_prefix=True), ids([oc1, ou1, oc2]), "stream-name prefix filter")
    eq(read(commit_position=start, filter_include=[f"T{u}Order"], filter_by_prefix=True),
       ids([oc1, ou1, oc2]), "event-type prefix filter")
    eq(read(commit_position=start, filter_include=[f"T{u}Invoice", f"X{u}"],
            filter_by_prefix=True), ids([ic1, x1]), "two event-type prefixes")
    eq(read(commit_position=start, filter_include=[f"{u}-(order-2|invoice-.*)"],
            filter_by_stream_name=True), ids([oc2, ic1, x1]), "stream-name regex")
    eq(read(commit_position=start, filter_include=[f"T{u}.*Created"]), ids([oc1, oc2, ic1]),
       "event-type regex")
    eq(read(commit_position=start, filter_include=[f"T{u}Order"]), [],
       "event-type regex is anchored (the client sends ^…$)")
    eq(read(commit_position=start, filter_exclude=(*DEFAULT_EXCLUDE_FILTER, f"T{u}Order.*")),
       ids([ic1, x1]), "event-type exclude regex")
    eq(read(commit_position=start, filter_exclude=[f"{u}-order-.*"], filter_by_stream_name=True),
       ids([ic1, x1]), "stream-name exclude regex")
    eq(read(commit_position=start, filter_include=[f"T{u}Order"], filter_by_prefix=True, limit=2),
       ids([oc1, ou1]), "limit applies after the filter")
    eq(read(backwards=True, filter_include=[f"{u}-order-"], filter_by_stream_name=True,
            filter_by_prefix=True, limit=2), ids([oc2, ou1]), "backwards with a prefix filter")


@check("delete")
def delete(ctx: Ctx) -> None:
    """Soft delete, as the client's test suite shows KurrentDB doing it."""
    c = ctx.client
    s = ctx.uniq("del")
    e1, e2, e3, e4 = ev("D1"), ev("D2"), ev("D3"), ev("D4")
    append_each(ctx, s, [e1, e2])
    ctx.step("delete_stream(s, 0) (stale)")
    raises(WrongCurrentVersionError, lambda: c.delete_stream(s, current_version=0, timeout=T),
           "delete with a stale revision")
    ctx.step("delete_stream(s, 1)")
    c.delete_stream(s, current_version=1, timeout=T)
    ctx.step("get_stream(deleted)")
    raises(NotFoundError, lambda: c.get_stream(s, timeout=T), "read after delete")
    eq(c.get_current_version(s, timeout=T), NO, "get_current_version after delete")
    ctx.step("append_to_stream(deleted, e3, NO_STREAM)")
    c.append_to_stream(s, events=e3, current_version=NO, timeout=T)
    eq(c.get_current_version(s, timeout=T), 2, "revisions go on after a delete")
    ctx.step("append_to_stream(recreated, e4, 2)")
    c.append_to_stream(s, events=e4, current_version=2, timeout=T)
    got = c.get_stream(s, timeout=T)
    eq([(r.id, r.stream_position) for r in got], [(e3.id, 2), (e4.id, 3)],
       "only the events appended after the delete")
    ctx.step("delete_stream(s, ANY) twice")
    c.delete_stream(s, current_version=ANY, timeout=T)
    c.delete_stream(s, current_version=ANY, timeout=T)
    raises(NotFoundError, lambda: c.get_stream(s, timeout=T), "read after the second delete")
    ctx.step("delete_stream(deleted, EXISTS)")
    raises(StreamIsDeletedError, lambda: c.delete_stream(s, current_version=EXISTS, timeout=T),
           "delete of a deleted stream, EXISTS")


@check("delete_again")
def delete_again(ctx: Ctx) -> None:
    """A deleted stream keeps its last revision for expected-version checks:
    deleting it again with that revision succeeds, with an older one it is a
    wrong expected version (the client's test suite against KurrentDB)."""
    c = ctx.client
    s = ctx.uniq("del-again")
    append_each(ctx, s, [ev("D1"), ev("D2")])
    ctx.step("delete_stream(s, 1)")
    c.delete_stream(s, current_version=1, timeout=T)
    ctx.step("delete_stream(deleted, 0)")
    raises(WrongCurrentVersionError, lambda: c.delete_stream(s, current_version=0, timeout=T),
           "delete of a deleted stream with a revision before its last")
    ctx.step("delete_stream(deleted, 1)")
    c.delete_stream(s, current_version=1, timeout=T)
    raises(NotFoundError, lambda: c.get_stream(s, timeout=T), "read after deleting twice")


@check("delete_recreate")
def delete_recreate(ctx: Ctx) -> None:
    """A deleted stream recreated by an append with ANY, and with its last
    revision as the expected version."""
    c = ctx.client
    s2 = ctx.uniq("del-any")
    f1, f2, f3 = ev("F1"), ev("F2"), ev("F3")
    append_each(ctx, s2, [f1])
    ctx.step("delete_stream(s2, EXISTS)")
    c.delete_stream(s2, current_version=EXISTS, timeout=T)
    ctx.step("append_to_stream(deleted s2, f2, ANY)")
    c.append_to_stream(s2, events=f2, current_version=ANY, timeout=T)
    eq([(r.id, r.stream_position) for r in c.get_stream(s2, timeout=T)], [(f2.id, 1)],
       "stream recreated with ANY")
    ctx.step("delete_stream(s2, 1)")
    c.delete_stream(s2, current_version=1, timeout=T)
    ctx.step("append_to_stream(deleted s2, f3, 0)")
    raises(WrongCurrentVersionError,
           lambda: c.append_to_stream(s2, events=f3, current_version=0, timeout=T),
           "append to a deleted stream with a revision before its last")
    ctx.step("append_to_stream(deleted s2, f3, 1) (its last revision)")
    c.append_to_stream(s2, events=f3, current_version=1, timeout=T)
    eq([(r.id, r.stream_position) for r in c.get_stream(s2, timeout=T)], [(f3.id, 2)],
       "stream recreated with its last revision as expected version")


@check("delete_missing")
def delete_missing(ctx: Ctx) -> None:
    """Deleting a stream that never existed: KurrentDB answers
    WrongExpectedVersion (actual -1), which the client raises as NotFoundError,
    whatever the expected version (the client's test suite shows ANY,
    NO_STREAM and EXISTS)."""
    c = ctx.client
    missing = ctx.uniq("del-missing")
    for v in (ANY, NO, EXISTS, 0):
        ctx.step(f"delete_stream(never existed, {v})")
        raises(NotFoundError, lambda: c.delete_stream(missing, current_version=v, timeout=T),
               f"delete of a stream that never existed, {v}")
    raises(NotFoundError, lambda: c.get_stream(missing, timeout=T), "the stream still does not exist")


@check("delete_hides_in_all")
def delete_hides_in_all(ctx: Ctx) -> None:
    """KurrentDB's soft delete hides a stream's events from the stream but
    not from $all (they stay there until a scavenge). Strata's $all applies
    the same retention as the stream (a documented difference,
    docs/KURRENTDB.md), so they are gone from both."""
    c = ctx.client
    s = ctx.uniq("del-all")
    e1, e2 = ev("K1"), ev("K2")
    cp1, _ = append_each(ctx, s, [e1, e2])
    ctx.step("delete_stream(s, 1)")
    c.delete_stream(s, current_version=1, timeout=T)
    ctx.step(f"read_all(commit_position={cp1}, filter stream name {s})")
    eq(ids(c.read_all(commit_position=cp1, filter_include=[s], filter_by_stream_name=True,
                      timeout=T)), [], "deleted stream's events in $all")


@check("tombstone")
def tombstone(ctx: Ctx) -> None:
    c = ctx.client
    missing = ctx.uniq("tomb-missing")
    ctx.step("tombstone_stream(never existed, EXISTS)")
    raises(NotFoundError, lambda: c.tombstone_stream(missing, current_version=EXISTS, timeout=T),
           "tombstone of a missing stream, EXISTS")
    ctx.step("tombstone_stream(never existed, ANY)")
    c.tombstone_stream(missing, current_version=ANY, timeout=T)
    ctx.step("append_to_stream(tombstoned never-existing, [e], NO_STREAM)")
    raises(StreamIsDeletedError,
           lambda: c.append_to_stream(missing, events=[ev("X")], current_version=NO, timeout=T),
           "append of a list to a tombstoned stream that never existed")
    s = ctx.uniq("tomb")
    e1, e2, e3 = ev("T1"), ev("T2"), ev("T3")
    append_each(ctx, s, [e1, e2])
    ctx.step("tombstone_stream(s, 0) (stale)")
    raises(WrongCurrentVersionError, lambda: c.tombstone_stream(s, current_version=0, timeout=T),
           "tombstone with a stale revision")
    ctx.step("tombstone_stream(s, 1)")
    c.tombstone_stream(s, current_version=1, timeout=T)
    for v in (1, 2, ANY):
        ctx.step(f"tombstone_stream(tombstoned, {v})")
        raises(StreamIsDeletedError, lambda: c.tombstone_stream(s, current_version=v, timeout=T),
               f"tombstone again with {v}")
    ctx.step("get_stream(tombstoned)")
    raises(StreamIsDeletedError, lambda: c.get_stream(s, timeout=T), "read of a tombstoned stream")
    ctx.step("get_stream(tombstoned, backwards=True)")
    raises(StreamIsDeletedError, lambda: c.get_stream(s, backwards=True, timeout=T),
           "read backwards of a tombstoned stream")
    ctx.step("get_current_version(tombstoned)")
    raises(StreamIsDeletedError, lambda: c.get_current_version(s, timeout=T),
           "get_current_version of a tombstoned stream")
    ctx.step("append_to_stream(tombstoned, [e3], ANY) (BatchAppend)")
    raises(StreamIsDeletedError,
           lambda: c.append_to_stream(s, events=[e3], current_version=ANY, timeout=T),
           "append of a list to a tombstoned stream")
    ctx.step("append_to_stream(tombstoned, e3, 1) (Append)")
    # KurrentDB answers Append with FAILED_PRECONDITION "Event stream '…' is
    # deleted."; for Append this client maps that to FailedPreconditionError.
    err = raises((StreamIsDeletedError, FailedPreconditionError),
                 lambda: c.append_to_stream(s, events=e3, current_version=1, timeout=T),
                 "append of one event to a tombstoned stream")
    true("is deleted" in str(err), f"message says the stream is deleted: {err}")
    ctx.step("delete_stream(tombstoned, ANY)")
    raises(StreamIsDeletedError, lambda: c.delete_stream(s, current_version=ANY, timeout=T),
           "delete of a tombstoned stream")
    ctx.step("subscribe_to_stream(tombstoned)")
    raises(StreamIsDeletedError,
           lambda: next(iter(c.subscribe_to_stream(s, timeout=5))),
           "subscription to a tombstoned stream")

