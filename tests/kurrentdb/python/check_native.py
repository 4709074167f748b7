"""Interleaving with Strata's native protocol: events appended with the
`strata` CLI (strata.v1) read through kurrentdbclient, and the other way
round, with the same order, content and ids. A Strata position p is KurrentDB
commit position p + 1 (docs/KURRENTDB.md, "Positions")."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from kurrentdbclient import NewEvent

from harness import CALL_TIMEOUT, SUB_TIMEOUT, Ctx, append_each, check, eq, ids, take

T = CALL_TIMEOUT


def _native_append(ctx: Ctx, stream: str, kind: str, data: Any, metadata: Any,
                   event_id: uuid.UUID, expected: str) -> dict[str, Any]:
    (out,) = ctx.strata_json("append", stream, "--type", kind, "--data", json.dumps(data),
                             "--metadata", json.dumps(metadata), "--id", str(event_id),
                             "--expected", expected)
    return out


@check("native_to_kurrentdb")
def native_to_kurrentdb(ctx: Ctx) -> None:
    c = ctx.client
    s = ctx.uniq("native-in")
    sent = [(f"N{i}", {"i": i, "text": f"native-{i}"}, {"by": "strata-cli", "i": i},
             uuid.uuid4()) for i in range(3)]
    outs = [_native_append(ctx, s, kind, data, meta, eid, exp)
            for (kind, data, meta, eid), exp in zip(sent, ["no-stream", "0", "1"])]
    eq([(o["stream"], o["revision"], o["id"]) for o in outs],
       [(s, i, str(sent[i][3])) for i in range(3)], "native append answers")
    ctx.step(f"get_stream({s!r})")
    got = c.get_stream(s, timeout=T)
    eq([(r.id, r.type, json.loads(r.data), json.loads(r.metadata), r.content_type,
         r.stream_name, r.stream_position, r.commit_position) for r in got],
       [(eid, kind, data, meta, "application/json", s, i, outs[i]["position"] + 1)
        for i, (kind, data, meta, eid) in enumerate(sent)],
       "events appended natively, read through kurrentdbclient")
    ctx.step("read_all(commit_position=first native position + 1, limit=3)")
    eq(ids(c.read_all(commit_position=outs[0]["position"] + 1, limit=3, timeout=T)),
       [x[3] for x in sent], "the same events in $all")
    # Live: a kurrentdbclient subscription sees a native append.
    ctx.step(f"subscribe_to_stream({s!r}, stream_position=2)")
    sub = c.subscribe_to_stream(s, stream_position=2, timeout=SUB_TIMEOUT)
    ctx.cleanup.append(sub.stop)
    live_id = uuid.uuid4()
    out = _native_append(ctx, s, "NLive", {"live": True}, {}, live_id, "2")
    (live,) = take(sub, 1, what="native append seen by a kurrentdbclient subscription")
    eq((live.id, live.type, json.loads(live.data), live.stream_position, live.commit_position),
       (live_id, "NLive", {"live": True}, 3, out["position"] + 1), "live event")
    sub.stop()


@check("kurrentdb_to_native")
def kurrentdb_to_native(ctx: Ctx) -> None:
    s = ctx.uniq("kdb-out")
    events = [
        NewEvent(type="J1", data=json.dumps({"a": [1, 2], "b": "x"}).encode(),
                 metadata=json.dumps({"m": 1}).encode()),
        NewEvent(type="Bin", data=b"\xff\x00\x01binary", metadata=b"",
                 content_type="application/octet-stream"),
        NewEvent(type="J2", data=b"{}", metadata=json.dumps({"m": 2}).encode()),
    ]
    cps = append_each(ctx, s, events)
    rows = ctx.strata_json("read", s)
    eq(len(rows), 3, "number of events read natively")
    for i, (row, e, cp) in enumerate(zip(rows, events, cps)):
        eq((row["id"], row["type"], row["stream"], row["revision"], row["position"],
            row["content_type"]),
           (str(e.id), e.type, s, i, cp - 1, e.content_type), f"native view of event {i}")
        for key, raw in (("data", e.data), ("metadata", e.metadata)):
            native = _native_payload(row, key)
            eq(native, _client_payload(raw, native), f"{key} of event {i}")
    rows_all = ctx.strata_json("read", "$all", "--from", str(cps[0] - 1), "--limit", "3")
    eq([r["id"] for r in rows_all], [str(e.id) for e in events], "the same events in native $all")
    rows_back = ctx.strata_json("read", s, "--backwards", "--limit", "2")
    eq([r["id"] for r in rows_back], [str(events[2].id), str(events[1].id)],
       "native backwards read")


def _native_payload(row: dict[str, Any], key: str) -> Any:
    """`data` or `metadata` as `strata read --json` prints it: JSON as JSON
    (returned parsed), otherwise text in its `<key>_encoding` (returned as
    bytes); absent means empty."""
    if key not in row:
        return b""
    value = row[key]
    encoding = row.get(f"{key}_encoding")
    if encoding is None:
        return ("json", value)
    if encoding == "utf-8":
        return value.encode()
    if encoding == "hex":
        return bytes.fromhex(value)
    if encoding == "base64":
        return base64.b64decode(value)
    raise AssertionError(f"unknown {key}_encoding {encoding!r}")


def _client_payload(raw: bytes, native: Any) -> Any:
    """The client's bytes in the form `_native_payload` gives, for comparing."""
    if isinstance(native, tuple):
        try:
            return ("json", json.loads(raw))
        except ValueError:
            return raw
    return raw
