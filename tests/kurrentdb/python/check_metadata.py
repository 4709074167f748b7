"""Stream metadata ($$stream): get and set, $maxCount, $maxAge, $acl, and
metadata of a tombstoned stream."""

from __future__ import annotations

import time
import uuid

from kurrentdbclient import StreamState
from kurrentdbclient.exceptions import (
    AccessDeniedError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)

from harness import CALL_TIMEOUT, Ctx, append_each, check, eq, ev, ids, raises

T = CALL_TIMEOUT
NO, ANY = StreamState.NO_STREAM, StreamState.ANY


@check("metadata_get_set")
def metadata_get_set(ctx: Ctx) -> None:
    c = ctx.client
    s = ctx.uniq("meta")
    append_each(ctx, s, [ev("M0")])
    ctx.step("get_stream_metadata(s) (none set)")
    eq(c.get_stream_metadata(s, timeout=T), ({}, NO), "metadata of a stream without any")
    m1 = {"custom": "value", "n": 1}
    ctx.step(f"set_stream_metadata(s, {m1}, current_version=NO_STREAM)")
    c.set_stream_metadata(s, metadata=m1, current_version=NO, timeout=T)
    eq(c.get_stream_metadata(s, timeout=T), (m1, 0), "metadata after the first set")
    ctx.step("set_stream_metadata(s, …, current_version=NO_STREAM) again (stale)")
    raises(WrongCurrentVersionError,
           lambda: c.set_stream_metadata(s, metadata={"x": 1}, current_version=NO, timeout=T),
           "set with a stale metadata version")
    m2 = {"custom": "other", "$maxCount": 100}
    ctx.step(f"set_stream_metadata(s, {m2}, current_version=0)")
    c.set_stream_metadata(s, metadata=m2, current_version=0, timeout=T)
    eq(c.get_stream_metadata(s, timeout=T), (m2, 1), "metadata after the second set")
    ctx.step("set_stream_metadata(s, …, ANY)")
    m3 = {"custom": "third"}
    c.set_stream_metadata(s, metadata=m3, timeout=T)
    eq(c.get_stream_metadata(s, timeout=T), (m3, 2), "metadata after a set with ANY")
    # Metadata may be set before the stream exists.
    s2 = ctx.uniq("meta-first")
    ctx.step("set_stream_metadata(not yet existing stream)")
    c.set_stream_metadata(s2, metadata={"early": True}, current_version=NO, timeout=T)
    eq(c.get_stream_metadata(s2, timeout=T), ({"early": True}, 0), "metadata set before the stream")
    e = ev("Later")
    append_each(ctx, s2, [e])
    eq(ids(c.get_stream(s2, timeout=T)), [e.id], "the stream created after its metadata")


@check("metadata_max_count")
def metadata_max_count(ctx: Ctx) -> None:
    c = ctx.client
    s = ctx.uniq("maxcount")
    es = [ev(f"C{i}") for i in range(5)]
    append_each(ctx, s, es)
    ctx.step("set_stream_metadata(s, {'$maxCount': 2})")
    c.set_stream_metadata(s, metadata={"$maxCount": 2}, current_version=NO, timeout=T)
    eq(c.get_stream_metadata(s, timeout=T), ({"$maxCount": 2}, 0), "metadata")
    ctx.step("get_stream(s) under $maxCount 2")
    eq([(r.id, r.stream_position) for r in c.get_stream(s, timeout=T)],
       [(es[3].id, 3), (es[4].id, 4)], "forwards read keeps only the last 2")
    eq(ids(c.get_stream(s, backwards=True, timeout=T)), [es[4].id, es[3].id],
       "backwards read keeps only the last 2")
    eq(ids(c.get_stream(s, stream_position=0, timeout=T)), [es[3].id, es[4].id],
       "forwards read from revision 0 starts at the first kept event")
    extra = ev("C5")
    append_each(ctx, s, [extra], first=4)
    eq(ids(c.get_stream(s, timeout=T)), [es[4].id, extra.id], "still the last 2 after one more")
    eq(c.get_current_version(s, timeout=T), 5, "current version is not affected")
    # In KurrentDB, $all is the log: events past $maxCount stay there until
    # a scavenge. Strata's $all applies the stream's retention (a documented
    # difference, docs/KURRENTDB.md): only the kept ones.
    ctx.step(f"read_all(filter stream name {s})")
    eq(ids(c.read_all(filter_include=[s], filter_by_stream_name=True, timeout=T)),
       [es[4].id, extra.id], "the stream's kept events in $all")


@check("metadata_max_age")
def metadata_max_age(ctx: Ctx) -> None:
    c = ctx.client
    s = ctx.uniq("maxage")
    old, new = ev("Old"), ev("New")
    append_each(ctx, s, [old])
    time.sleep(2.2)
    append_each(ctx, s, [new], first=0)
    ctx.step("set_stream_metadata(s, {'$maxAge': 2})")
    c.set_stream_metadata(s, metadata={"$maxAge": 2}, current_version=NO, timeout=T)
    ctx.step("get_stream(s) under $maxAge 2 s")
    eq(ids(c.get_stream(s, timeout=T)), [new.id], "only the event younger than $maxAge")
    eq(c.get_stream_metadata(s, timeout=T), ({"$maxAge": 2}, 0), "metadata")


@check("metadata_acl")
def metadata_acl(ctx: Ctx) -> None:
    c = ctx.client
    closed, open_ = ctx.uniq("acl-admins"), ctx.uniq("acl-user")
    e1, e2 = ev("Secret"), ev("Shared")
    append_each(ctx, closed, [e1])
    append_each(ctx, open_, [e2])
    user = f"kdbuser-{uuid.uuid4().hex[:8]}"
    acl_closed = {"$acl": {"$r": "$admins", "$w": "$admins", "$d": "$admins", "$mr": "$admins",
                           "$mw": "$admins"}}
    acl_open = {"$acl": {"$r": [user, "$admins"], "$w": "$admins"}}
    ctx.step(f"set_stream_metadata(closed, {acl_closed})")
    c.set_stream_metadata(closed, metadata=acl_closed, current_version=NO, timeout=T)
    ctx.step(f"set_stream_metadata(open, {acl_open})")
    c.set_stream_metadata(open_, metadata=acl_open, current_version=NO, timeout=T)
    eq(ids(c.get_stream(closed, timeout=T)), [e1.id], "an admin reads the $admins stream")
    if ctx.target.tls:  # (no authentication on the plain target: nothing to refuse)
        _acl_enforced(ctx, user, closed, open_, e2.id)
    # KurrentDB keeps the metadata event as written: read back unchanged.
    eq(c.get_stream_metadata(closed, timeout=T), (acl_closed, 0), "ACL metadata read back")
    eq(c.get_stream_metadata(open_, timeout=T), (acl_open, 0), "ACL metadata read back")


def _acl_enforced(ctx: Ctx, user: str, closed: str, open_: str, open_id: uuid.UUID) -> None:
    c = ctx.client
    password = uuid.uuid4().hex
    ctx.strata_ok("user", "create", user, "--new-password", password)
    creds = c.construct_call_credentials(user, password)
    ctx.step(f"get_stream(open, credentials={user})")
    eq(ids(c.get_stream(open_, timeout=T, credentials=creds)), [open_id],
       "the user named in $r reads the stream")
    ctx.step(f"get_stream(closed, credentials={user})")
    raises(AccessDeniedError, lambda: c.get_stream(closed, timeout=T, credentials=creds),
           "a user outside $r reads the $admins stream")
    ctx.step(f"append_to_stream(open, credentials={user}) (not in $w)")
    raises(AccessDeniedError,
           lambda: c.append_to_stream(open_, events=ev("X"), current_version=ANY, timeout=T,
                                      credentials=creds),
           "a user outside $w appends")


@check("metadata_after_delete")
def metadata_after_delete(ctx: Ctx) -> None:
    """KurrentDB soft-deletes by writing $tb (truncate before) = long.MaxValue
    into the stream's metadata (the client's test suite checks it)."""
    c = ctx.client
    s = ctx.uniq("meta-del")
    append_each(ctx, s, [ev("X"), ev("Y")])
    ctx.step("delete_stream(s, 1); get_stream_metadata(s)")
    c.delete_stream(s, current_version=1, timeout=T)
    meta, _version = c.get_stream_metadata(s, timeout=T)
    eq(meta.get("$tb"), 9223372036854775807, "$tb in the metadata of a deleted stream")


@check("metadata_tombstoned")
def metadata_tombstoned(ctx: Ctx) -> None:
    c = ctx.client
    s = ctx.uniq("meta-tomb")
    append_each(ctx, s, [ev("X")])
    ctx.step("tombstone_stream(s, 0)")
    c.tombstone_stream(s, current_version=0, timeout=T)
    ctx.step("get_stream_metadata(tombstoned)")
    raises(StreamIsDeletedError, lambda: c.get_stream_metadata(s, timeout=T),
           "metadata of a tombstoned stream")
