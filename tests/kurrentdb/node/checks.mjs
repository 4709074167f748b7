// KurrentDB's official Node.js client (@kurrent/kurrentdb-client, unchanged)
// against Strata: one target per run (KDB_TARGET = plain | tls), every check
// written to KurrentDB's documented behaviour. Prints `ok <target> <check>` or
// `FAIL <target> <check>: <why>` per check and exits 1 if any failed.
import { randomUUID } from "node:crypto";
import {
  KurrentDBClient,
  jsonEvent,
  binaryEvent,
  ANY,
  NO_STREAM,
  STREAM_EXISTS,
  START,
  END,
  FORWARDS,
  BACKWARDS,
  ROUND_ROBIN,
  UNBOUNDED,
  streamNameFilter,
  eventTypeFilter,
  excludeSystemEvents,
  persistentSubscriptionToStreamSettingsFromDefaults,
  persistentSubscriptionToAllSettingsFromDefaults,
  WrongExpectedVersionError,
  StreamNotFoundError,
  StreamDeletedError,
  AccessDeniedError,
  PersistentSubscriptionExistsError,
  PersistentSubscriptionDoesNotExistError,
} from "@kurrent/kurrentdb-client";
import {
  TARGET,
  check,
  collect,
  eq,
  truthy,
  fail,
  rejects,
  follow,
  sleep,
  strata,
  jsonLines,
  summary,
} from "./lib.mjs";

const URL = process.env[`KDB_URL_${TARGET}`];
if (!URL) {
  console.log(`FAIL ${TARGET} setup: KDB_URL_${TARGET} is not set`);
  process.exit(1);
}
const TLS = TARGET === "tls";

// A hard bound on the whole run: whatever hangs, the process ends.
const watchdog = setTimeout(() => {
  console.log(`FAIL ${TARGET} run: the checks did not finish within 150 s`);
  process.exit(1);
}, 150_000);

const RUN = randomUUID();
const R = RUN.replaceAll("-", "");
const name = (tag) => `${tag}-${RUN}`;

const client = KurrentDBClient.connectionString(URL);

const ids = (evs) => evs.map((e) => e.event?.id);
const revs = (evs) => evs.map((e) => e.event?.revision);
const ev = (type, data, extra = {}) => jsonEvent({ type, data, ...extra });
const readIds = async (stream, opts) => ids(await collect(client.readStream(stream, opts)));

// ---------------------------------------------------------------- appends

await check("append-one-no-stream", async () => {
  const s = name("one");
  const e = ev("OneHappened", { n: 1, text: "ü€" }, { metadata: { m: true } });
  const before = Date.now();
  const r = await client.appendToStream(s, e, { streamState: NO_STREAM });
  eq(r.success, true, "success");
  eq(r.nextExpectedRevision, 0n, "nextExpectedRevision");
  truthy(r.position && typeof r.position.commit === "bigint", `append answers a position, got ${r.position}`);
  const read = await collect(client.readStream(s));
  eq(read.length, 1, "events read");
  const got = read[0].event;
  eq(got.streamId, s, "streamId");
  eq(got.id, e.id, "id");
  eq(got.revision, 0n, "revision");
  eq(got.type, "OneHappened", "type");
  eq(got.isJson, true, "isJson");
  eq(got.data, { n: 1, text: "ü€" }, "data");
  eq(got.metadata, { m: true }, "metadata");
  eq(got.position, r.position, "position of the event = position answered by the append");
  const created = got.created.getTime();
  truthy(
    Math.abs(created - before) < 60_000,
    `created ${got.created.toISOString()} is not within 60 s of now (${new Date(before).toISOString()})`,
  );
});

await check("append-many-exact-revision", async () => {
  const s = name("many");
  const first = ev("First", { i: 0 });
  const r0 = await client.appendToStream(s, first, { streamState: NO_STREAM });
  eq(r0.nextExpectedRevision, 0n, "first append nextExpectedRevision");
  const three = [1, 2, 3].map((i) => ev("Next", { i }));
  const r1 = await client.appendToStream(s, three, { streamState: 0n });
  eq(r1.success, true, "success");
  eq(r1.nextExpectedRevision, 3n, "nextExpectedRevision after 3 more");
  const last = ev("Last", { i: 4 });
  const r2 = await client.appendToStream(s, last, { streamState: 3n });
  eq(r2.nextExpectedRevision, 4n, "nextExpectedRevision after exact 3n");
  truthy(r2.position.commit > r1.position.commit, "positions grow");
  const read = await collect(client.readStream(s));
  eq(ids(read), [first, ...three, last].map((e) => e.id), "ids in order");
  eq(revs(read), [0n, 1n, 2n, 3n, 4n], "revisions");
  eq(read.map((e) => e.event.data.i), [0, 1, 2, 3, 4], "data");
  eq(read.map((e) => e.event.type), ["First", "Next", "Next", "Next", "Last"], "types");
});

await check("append-any", async () => {
  const s = name("any");
  const r0 = await client.appendToStream(s, ev("A", {}), { streamState: ANY });
  eq(r0.nextExpectedRevision, 0n, "ANY on a missing stream");
  const r1 = await client.appendToStream(s, [ev("A", {}), ev("A", {})], { streamState: ANY });
  eq(r1.nextExpectedRevision, 2n, "ANY on an existing stream");
  const r2 = await client.appendToStream(s, ev("A", {})); // default is ANY
  eq(r2.nextExpectedRevision, 3n, "default expected state");
  eq(revs(await collect(client.readStream(s))), [0n, 1n, 2n, 3n], "revisions");
});

await check("append-stream-exists", async () => {
  const missing = name("exists-missing");
  const err = await rejects(
    () => client.appendToStream(missing, ev("E", {}), { streamState: STREAM_EXISTS }),
    WrongExpectedVersionError,
    "STREAM_EXISTS on a missing stream",
  );
  eq(err.streamName, missing, "error streamName");
  eq(err.expectedState, STREAM_EXISTS, "error expectedState");
  eq(err.actualState, NO_STREAM, "error actualState");
  await rejects(() => collect(client.readStream(missing)), StreamNotFoundError, "nothing written");
  const s = name("exists");
  await client.appendToStream(s, ev("E", {}), { streamState: NO_STREAM });
  const r = await client.appendToStream(s, ev("E", {}), { streamState: STREAM_EXISTS });
  eq(r.nextExpectedRevision, 1n, "STREAM_EXISTS on an existing stream");
});

await check("append-conflicts", async () => {
  const s = name("conflict");
  const written = [ev("C", { i: 0 }), ev("C", { i: 1 })];
  await client.appendToStream(s, written, { streamState: NO_STREAM });
  for (const [state, expected] of [
    [NO_STREAM, NO_STREAM],
    [5n, 5n],
    [0n, 0n],
  ]) {
    const err = await rejects(
      () => client.appendToStream(s, ev("C", { bad: true }), { streamState: state }),
      WrongExpectedVersionError,
      `streamState ${state} on a stream at revision 1`,
    );
    eq(err.streamName, s, `streamName (streamState ${state})`);
    eq(err.expectedState, expected, `expectedState (streamState ${state})`);
    eq(err.actualState, 1n, `actualState (streamState ${state})`);
  }
  const missing = name("conflict-missing");
  const err = await rejects(
    () => client.appendToStream(missing, ev("C", {}), { streamState: 0n }),
    WrongExpectedVersionError,
    "exact revision 0n on a missing stream",
  );
  eq(err.expectedState, 0n, "expectedState (missing stream)");
  eq(err.actualState, NO_STREAM, "actualState (missing stream)");
  eq(await readIds(s), written.map((e) => e.id), "nothing written by the conflicts");
});

await check("append-idempotent-retry", async () => {
  const s = name("idem");
  const events = [0, 1, 2].map((i) => ev("Idem", { i }, { id: randomUUID() }));
  const r1 = await client.appendToStream(s, events, { streamState: NO_STREAM });
  eq(r1.nextExpectedRevision, 2n, "first write");
  const r2 = await client.appendToStream(s, events, { streamState: NO_STREAM });
  eq(r2.success, true, "retry with the same expected state succeeds");
  eq(r2.nextExpectedRevision, 2n, "retry with the same expected state: nextExpectedRevision");
  const r3 = await client.appendToStream(s, events, { streamState: ANY });
  eq(r3.success, true, "retry with ANY succeeds");
  eq(r3.nextExpectedRevision, 2n, "retry with ANY: nextExpectedRevision");
  const read = await collect(client.readStream(s));
  eq(ids(read), events.map((e) => e.id), "each event once");
  const r4 = await client.appendToStream(s, ev("Idem", { i: 3 }), { streamState: 2n });
  eq(r4.nextExpectedRevision, 3n, "the stream is still at revision 2 after the retries");
});

await check("append-position-usable", async () => {
  const s = name("pos");
  const e1 = ev("P", { i: 1 });
  const e2 = ev("P", { i: 2 });
  const r1 = await client.appendToStream(s, e1);
  const r2 = await client.appendToStream(s, e2);
  truthy(r2.position.commit > r1.position.commit, "second position after the first");
  const fwd = await collect(client.readAll({ fromPosition: r1.position, maxCount: 2 }));
  eq(ids(fwd), [e1.id, e2.id], "readAll forwards from the first append's position");
  eq(fwd.map((e) => e.event.position), [r1.position, r2.position], "positions read = positions answered");
  const back = await collect(
    client.readAll({ fromPosition: r2.position, direction: BACKWARDS, maxCount: 1 }),
  );
  eq(ids(back), [e1.id], "readAll backwards from the second append's position (the events before it)");
});

// ---------------------------------------------------------------- reads

const readStreamName = name("read");
const readEvents = [0, 1, 2, 3, 4].map((i) => ev("R", { i }));
const readStreamIds = readEvents.map((e) => e.id);

await check("read-stream-forwards", async () => {
  await client.appendToStream(readStreamName, readEvents, { streamState: NO_STREAM });
  const all = await collect(client.readStream(readStreamName));
  eq(ids(all), readStreamIds, "all, forwards");
  eq(revs(all), [0n, 1n, 2n, 3n, 4n], "revisions");
  const firstTwo = await collect(client.readStream(readStreamName, { maxCount: 2 }));
  eq(revs(firstTwo), [0n, 1n], "maxCount 2");
  const from2 = await collect(client.readStream(readStreamName, { fromRevision: 2n }));
  eq(revs(from2), [2n, 3n, 4n], "fromRevision 2n");
  eq(ids(from2), readStreamIds.slice(2), "fromRevision 2n ids");
  const one = await collect(
    client.readStream(readStreamName, { fromRevision: 3n, maxCount: 1, direction: FORWARDS }),
  );
  eq(revs(one), [3n], "fromRevision 3n maxCount 1");
  const beyond = await collect(client.readStream(readStreamName, { fromRevision: 5n }));
  eq(beyond.length, 0, "fromRevision past the end reads nothing");
});

await check("read-stream-backwards", async () => {
  const all = await collect(
    client.readStream(readStreamName, { direction: BACKWARDS, fromRevision: END }),
  );
  eq(revs(all), [4n, 3n, 2n, 1n, 0n], "all, backwards from END");
  eq(ids(all), [...readStreamIds].reverse(), "ids backwards");
  const lastTwo = await collect(
    client.readStream(readStreamName, { direction: BACKWARDS, fromRevision: END, maxCount: 2 }),
  );
  eq(revs(lastTwo), [4n, 3n], "backwards maxCount 2");
  const from2 = await collect(
    client.readStream(readStreamName, { direction: BACKWARDS, fromRevision: 2n }),
  );
  eq(revs(from2), [2n, 1n, 0n], "backwards from revision 2n");
  const from3 = await collect(
    client.readStream(readStreamName, { direction: BACKWARDS, fromRevision: 3n, maxCount: 2 }),
  );
  eq(revs(from3), [3n, 2n], "backwards from revision 3n, maxCount 2");
});

await check("read-stream-not-found", async () => {
  const missing = name("missing");
  const err = await rejects(
    () => collect(client.readStream(missing)),
    StreamNotFoundError,
    "readStream forwards of a missing stream",
  );
  eq(err.streamName, missing, "error streamName");
  await rejects(
    () => collect(client.readStream(missing, { direction: BACKWARDS, fromRevision: END })),
    StreamNotFoundError,
    "readStream backwards of a missing stream",
  );
});

await check("read-all-forwards-backwards", async () => {
  const s = name("readall");
  const es = [1, 2, 3].map((i) => ev("RA", { i }));
  const rs = [];
  for (const e of es) rs.push(await client.appendToStream(s, e));
  const fwd = await collect(client.readAll({ fromPosition: rs[0].position, maxCount: 3 }));
  eq(ids(fwd), es.map((e) => e.id), "forwards from the first position, maxCount 3");
  eq(fwd.map((e) => e.event.streamId), [s, s, s], "streamIds");
  eq(fwd.map((e) => e.event.position), rs.map((r) => r.position), "positions");
  const from2 = await collect(client.readAll({ fromPosition: rs[1].position, maxCount: 5 }));
  eq(ids(from2), [es[1].id, es[2].id], "forwards from the second position (inclusive)");
  const back = await collect(client.readAll({ direction: BACKWARDS, fromPosition: END, maxCount: 3 }));
  eq(ids(back), es.map((e) => e.id).reverse(), "backwards from END, maxCount 3");
  const backFrom3 = await collect(
    client.readAll({ direction: BACKWARDS, fromPosition: rs[2].position, maxCount: 2 }),
  );
  eq(ids(backFrom3), [es[1].id, es[0].id], "backwards from the third position (exclusive)");
  const first = await collect(client.readAll({ maxCount: 1 }));
  eq(first.length, 1, "forwards from START, maxCount 1");
  truthy(first[0].event.position.commit <= rs[0].position.commit, "the first event of $all is not after ours");
});

await check("read-all-order", async () => {
  const fwd = await collect(client.readAll({}));
  const back = await collect(client.readAll({ direction: BACKWARDS, fromPosition: END }));
  truthy(fwd.length > 0, "$all is not empty");
  for (let i = 1; i < fwd.length; i++) {
    if (!(fwd[i].event.position.commit > fwd[i - 1].event.position.commit)) {
      fail(`commit positions not increasing at index ${i}`);
    }
  }
  eq(ids(back), ids(fwd).reverse(), "backwards is forwards reversed");
});

// ---------------------------------------------------------------- filters

// e1..e5 interleaved over four streams and two event types.
const P = `flt-${RUN}`;
const TA = `FltA${R}`;
const TB = `FltB${R}`;
const F = [
  [`${P}-a-1`, TA],
  [`${P}-b-1`, TB],
  [`${P}-a-2`, TB],
  [`${P}-c-1`, TA],
  [`${P}-a-1`, TB],
].map(([stream, type], i) => ({ stream, e: ev(type, { i }) }));
const fid = (...idx) => idx.map((i) => F[i].e.id);
let fPositions = [];
const readFiltered = async (filter, opts = {}) => ids(await collect(client.readAll({ filter, ...opts })));

await check("read-all-filter-stream-prefix", async () => {
  fPositions = [];
  for (const { stream, e } of F) fPositions.push((await client.appendToStream(stream, e)).position);
  eq(await readFiltered(streamNameFilter({ prefixes: [`${P}-a-`] })), fid(0, 2, 4), "one prefix");
  eq(
    await readFiltered(streamNameFilter({ prefixes: [`${P}-a-`, `${P}-c-`] })),
    fid(0, 2, 3, 4),
    "two prefixes",
  );
  eq(
    await readFiltered(streamNameFilter({ prefixes: [`${P}-a-`] }), { maxCount: 2 }),
    fid(0, 2),
    "one prefix, maxCount 2",
  );
  eq(
    await readFiltered(streamNameFilter({ prefixes: [`${P}-a-`] }), {
      direction: BACKWARDS,
      fromPosition: END,
    }),
    fid(4, 2, 0),
    "one prefix, backwards",
  );
  eq(
    await readFiltered(streamNameFilter({ prefixes: [`${P}-a-`] }), { fromPosition: fPositions[1] }),
    fid(2, 4),
    "one prefix, from a position",
  );
});

await check("read-all-filter-type-prefix", async () => {
  eq(await readFiltered(eventTypeFilter({ prefixes: [TA] })), fid(0, 3), "type prefix A");
  eq(await readFiltered(eventTypeFilter({ prefixes: [TB] })), fid(1, 2, 4), "type prefix B");
  eq(await readFiltered(eventTypeFilter({ prefixes: [TA, TB] })), fid(0, 1, 2, 3, 4), "both type prefixes");
  eq(
    await readFiltered(eventTypeFilter({ prefixes: [TB] }), { direction: BACKWARDS, fromPosition: END, maxCount: 2 }),
    fid(4, 2),
    "type prefix B, backwards, maxCount 2",
  );
});

await check("read-all-filter-regex", async () => {
  eq(await readFiltered(streamNameFilter({ regex: `^${P}-(b|c)-` })), fid(1, 3), "stream regex, anchored");
  eq(await readFiltered(streamNameFilter({ regex: `${RUN}-a-` })), fid(0, 2, 4), "stream regex, unanchored (matches anywhere)");
  eq(await readFiltered(eventTypeFilter({ regex: `^FltA${R}$` })), fid(0, 3), "event type regex");
  eq(
    await readFiltered(eventTypeFilter({ regex: `^Flt(A|B)${R}$` }), { direction: BACKWARDS, fromPosition: END }),
    fid(4, 3, 2, 1, 0),
    "event type regex, backwards",
  );
});

await check("read-all-exclude-system-events", async () => {
  const got = await collect(client.readAll({ filter: excludeSystemEvents(), fromPosition: fPositions[0] }));
  eq(ids(got), fid(0, 1, 2, 3, 4), "excludeSystemEvents from e1's position");
  const all = await collect(client.readAll({ filter: excludeSystemEvents() }));
  const system = all.filter((e) => e.event.type.startsWith("$"));
  eq(system.length, 0, "no $-typed event passes excludeSystemEvents");
});

// ---------------------------------------------------------------- subscriptions

const subStream = name("sub");
const subEvents = [0, 1, 2, 3, 4, 5].map((i) => ev("S", { i }));

await check("subscribe-stream-catchup-live", async (defer) => {
  await client.appendToStream(subStream, subEvents.slice(0, 3), { streamState: NO_STREAM });
  const sub = client.subscribeToStream(subStream, { fromRevision: START });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  await st.until((s) => s.events.length >= 3, 5_000, "3 stored events");
  await st.until((s) => s.caughtUp > 0, 5_000, "caughtUp after the stored events");
  eq(st.events.length, 3, "events before caughtUp");
  await client.appendToStream(subStream, subEvents.slice(3, 5), { streamState: 2n });
  await st.until((s) => s.events.length >= 5, 5_000, "2 live events");
  await sleep(300);
  eq(ids(st.events), subEvents.slice(0, 5).map((e) => e.id), "catch-up then live, in order, once each");
  eq(revs(st.events), [0n, 1n, 2n, 3n, 4n], "revisions");
});

await check("subscribe-stream-resume", async (defer) => {
  const sub = client.subscribeToStream(subStream, { fromRevision: 2n });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  await st.until((s) => s.events.length >= 2, 5_000, "events after revision 2");
  await client.appendToStream(subStream, subEvents[5], { streamState: 4n });
  await st.until((s) => s.events.length >= 3, 5_000, "a live event");
  await sleep(300);
  eq(revs(st.events), [3n, 4n, 5n], "from revision 2n: after it, no gap, no duplicate");
  eq(ids(st.events), subEvents.slice(3).map((e) => e.id), "ids");
});

await check("subscribe-stream-not-yet-existing", async (defer) => {
  const s = name("sub-later");
  const sub = client.subscribeToStream(s, { fromRevision: START });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  await sleep(300);
  eq(st.error, null, "subscribing to a missing stream is not an error");
  const e = ev("Later", {});
  await client.appendToStream(s, e, { streamState: NO_STREAM });
  await st.until((x) => x.events.length >= 1, 5_000, "the first event");
  eq(ids(st.events), [e.id], "the stream's first event arrives");
});

await check("subscribe-all-catchup-live", async (defer) => {
  const Q = `suball-${RUN}`;
  const es = [0, 1, 2, 3].map((i) => ({ stream: `${Q}-${i % 2}`, e: ev("SA", { i }) }));
  for (const { stream, e } of es.slice(0, 2)) await client.appendToStream(stream, e);
  const sub = client.subscribeToAll({ fromPosition: START, filter: streamNameFilter({ prefixes: [Q] }) });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  await st.until((s) => s.events.length >= 2, 5_000, "2 stored events");
  await st.until((s) => s.caughtUp > 0, 5_000, "caughtUp");
  for (const { stream, e } of es.slice(2)) await client.appendToStream(stream, e);
  await st.until((s) => s.events.length >= 4, 5_000, "2 live events");
  await sleep(300);
  eq(ids(st.events), es.map((x) => x.e.id), "catch-up then live, in order, once each");
});

await check("subscribe-all-resume", async (defer) => {
  const s = name("resume-all");
  const x = [0, 1, 2, 3].map((i) => ev("X", { i }));
  const r0 = await client.appendToStream(s, x[0]);
  const sub = client.subscribeToAll({ fromPosition: r0.position });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  await client.appendToStream(s, x[1]);
  await client.appendToStream(s, x[2]);
  await st.until((z) => z.events.length >= 2, 5_000, "2 events after the append's position");
  eq(ids(st.events.slice(0, 2)), [x[1].id, x[2].id], "subscribeToAll from an append's position starts after it");
  const resumeAt = st.events[0].event.position;
  await sub.unsubscribe();
  const sub2 = client.subscribeToAll({ fromPosition: resumeAt });
  defer(() => sub2.unsubscribe());
  const st2 = follow(sub2);
  await st2.until((z) => z.events.length >= 1, 5_000, "the event after the resume position");
  await client.appendToStream(s, x[3]);
  await st2.until((z) => z.events.length >= 2, 5_000, "a live event after resuming");
  await sleep(300);
  eq(ids(st2.events), [x[2].id, x[3].id], "resumed from a received event's position: no gap, no duplicate");
});

await check("subscribe-all-filter-checkpoint", async (defer) => {
  const K = `ckpt-${RUN}`;
  const checkpoints = [];
  const filter = streamNameFilter({
    prefixes: [K],
    checkpointReached: (_sub, position) => {
      checkpoints.push(position);
    },
  });
  const sub = client.subscribeToAll({ fromPosition: START, filter });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  const m1 = ev("M", { i: 1 });
  const rm1 = await client.appendToStream(`${K}-1`, m1);
  const noise = Array.from({ length: 100 }, (_, i) => ev("Noise", { i }));
  const rn = await client.appendToStream(name("noise"), noise);
  await st.until((z) => z.events.length >= 1, 5_000, "the matching event");
  await st.until(
    () => checkpoints.some((c) => c.commit >= rm1.position.commit),
    10_000,
    `a checkpoint at or after the matching event (got ${checkpoints.length} checkpoints)`,
  );
  const m2 = ev("M", { i: 2 });
  const rm2 = await client.appendToStream(`${K}-2`, m2);
  await st.until((z) => z.events.length >= 2, 5_000, "the second matching event");
  await sleep(300);
  eq(ids(st.events), [m1.id, m2.id], "only the filtered streams' events");
  for (const c of checkpoints) {
    truthy(c.commit <= rm2.position.commit, `checkpoint ${c.commit} beyond the last write ${rm2.position.commit}`);
  }
  truthy(rn.position.commit < rm2.position.commit, "noise before m2");
  const cp = checkpoints.filter((c) => c.commit >= rm1.position.commit)[0];
  const sub2 = client.subscribeToAll({ fromPosition: cp, filter: streamNameFilter({ prefixes: [K] }) });
  defer(() => sub2.unsubscribe());
  const st2 = follow(sub2);
  await st2.until((z) => z.events.length >= 1, 5_000, "events after the checkpoint");
  await sleep(300);
  eq(ids(st2.events), [m2.id], "resumed from the checkpoint: the events after it, no duplicate");
}, { timeout: 30_000 });

await check("subscribe-all-filter-type-regex", async (defer) => {
  const sub = client.subscribeToAll({
    fromPosition: START,
    filter: eventTypeFilter({ regex: `^Sub${R}(X|Y)$` }),
  });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  const s = name("sub-type");
  const x = ev(`Sub${R}X`, {});
  const z = ev(`Sub${R}Z`, {});
  const y = ev(`Sub${R}Y`, {});
  await client.appendToStream(s, [x, z, y]);
  await st.until((q) => q.events.length >= 2, 5_000, "2 matching events");
  await sleep(300);
  eq(ids(st.events), [x.id, y.id], "only the matching event types");
});

// ---------------------------------------------------------------- delete, tombstone

const twoEvents = () => [ev("D", { i: 0 }), ev("D", { i: 1 })];

for (const [label, state, next] of [
  ["delete-then-append-no-stream", NO_STREAM, 2n],
  ["delete-then-append-any", ANY, 2n],
  ["delete-then-append-exact", 1n, 2n],
]) {
  await check(label, async () => {
    const s = name(label);
    await client.appendToStream(s, twoEvents(), { streamState: NO_STREAM });
    const d = await client.deleteStream(s);
    truthy(d.position && typeof d.position.commit === "bigint", `deleteStream answers a position, got ${d.position}`);
    await rejects(() => collect(client.readStream(s)), StreamNotFoundError, "readStream after deleteStream");
    const e = ev("Again", {});
    const r = await client.appendToStream(s, e, { streamState: state });
    eq(r.nextExpectedRevision, next, `append (${state}) after a soft delete continues the revisions`);
    const read = await collect(client.readStream(s));
    eq(ids(read), [e.id], "only the new event is read");
    eq(revs(read), [2n], "its revision");
  });
}

await check("delete-expected-revision", async () => {
  const s = name("del-exp");
  await client.appendToStream(s, twoEvents(), { streamState: NO_STREAM });
  const err = await rejects(
    () => client.deleteStream(s, { expectedRevision: 5n }),
    WrongExpectedVersionError,
    "deleteStream with a wrong expected revision",
  );
  eq(err.streamName, s, "error streamName");
  eq(err.expectedState, 5n, "error expectedState");
  eq(err.actualState, 1n, "error actualState");
  await rejects(
    () => client.deleteStream(s, { expectedRevision: NO_STREAM }),
    WrongExpectedVersionError,
    "deleteStream NO_STREAM of an existing stream",
  );
  eq((await collect(client.readStream(s))).length, 2, "still readable after the refused deletes");
  await client.deleteStream(s, { expectedRevision: 1n });
  await rejects(() => collect(client.readStream(s)), StreamNotFoundError, "deleted with the right revision");
});

// KurrentDB's soft delete of a stream with neither events nor metadata is a
// wrong expected version (StorageWriterService: "SOFT DELETE" refuses when the
// stream's and its metastream's last event numbers are both < 0).
await check("delete-missing-stream", async () => {
  const missing = name("del-missing");
  for (const expectedRevision of [ANY, NO_STREAM]) {
    const err = await rejects(
      () => client.deleteStream(missing, { expectedRevision }),
      WrongExpectedVersionError,
      `deleteStream (${expectedRevision}) of a stream that never existed`,
    );
    eq(err.streamName, missing, "error streamName");
  }
});

// A soft-deleted stream that is written again gets `$tb` = its first new
// revision in its metadata (KurrentDB's SoftUndeleteStream); the soft delete
// itself wrote metadata holding only `$tb`.
await check("delete-then-append-metadata", async () => {
  const s = name("del-meta");
  await client.appendToStream(s, twoEvents(), { streamState: NO_STREAM });
  await client.deleteStream(s);
  const r = await client.appendToStream(s, [ev("Again", { i: 2 }), ev("Again", { i: 3 }), ev("Again", { i: 4 })]);
  eq(r.nextExpectedRevision, 4n, "revisions continue");
  eq(revs(await collect(client.readStream(s))), [2n, 3n, 4n], "only the new events");
  const meta = await client.getStreamMetadata(s);
  eq(meta.metadata, { truncateBefore: 2 }, "metadata after recreation");
});

await check("tombstone-stream", async (defer) => {
  const s = name("tomb");
  await client.appendToStream(s, twoEvents(), { streamState: NO_STREAM });
  const t = await client.tombstoneStream(s);
  truthy(t.position && typeof t.position.commit === "bigint", `tombstoneStream answers a position, got ${t.position}`);
  await rejects(() => collect(client.readStream(s)), StreamDeletedError, "readStream");
  await rejects(
    () => collect(client.readStream(s, { direction: BACKWARDS, fromRevision: END })),
    StreamDeletedError,
    "readStream backwards",
  );
  for (const state of [ANY, NO_STREAM, STREAM_EXISTS, 1n]) {
    await rejects(() => client.appendToStream(s, ev("D", {}), { streamState: state }), StreamDeletedError, `appendToStream (${state})`);
  }
  await rejects(() => client.deleteStream(s), StreamDeletedError, "deleteStream");
  await rejects(() => client.tombstoneStream(s), StreamDeletedError, "tombstoneStream again");
  await rejects(() => client.setStreamMetadata(s, { maxCount: 1 }), StreamDeletedError, "setStreamMetadata");
  const sub = client.subscribeToStream(s, { fromRevision: START });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 5_000);
    sub.once("error", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  truthy(st.error instanceof StreamDeletedError, `subscribeToStream: expected StreamDeletedError, got ${st.error ? st.error.constructor.name + ": " + st.error.message : "no error in 5 s"}`);
});

await check("tombstone-expected-revision-and-missing", async () => {
  const s = name("tomb-exp");
  await client.appendToStream(s, twoEvents(), { streamState: NO_STREAM });
  const err = await rejects(
    () => client.tombstoneStream(s, { expectedRevision: 0n }),
    WrongExpectedVersionError,
    "tombstoneStream with a wrong expected revision",
  );
  eq(err.expectedState, 0n, "error expectedState");
  eq(err.actualState, 1n, "error actualState");
  eq((await collect(client.readStream(s))).length, 2, "still readable");
  const missing = name("tomb-missing");
  await client.tombstoneStream(missing);
  await rejects(() => client.appendToStream(missing, ev("D", {})), StreamDeletedError, "append to a tombstoned name that never existed");
});

// ---------------------------------------------------------------- metadata

await check("metadata-roundtrip", async () => {
  const s = name("meta");
  await client.appendToStream(s, ev("M", {}));
  const none = await client.getStreamMetadata(s);
  eq(none.metadata, undefined, "no metadata before any is set");
  eq(none.streamName, s, "streamName");
  const meta = {
    maxCount: 10,
    maxAge: 86_400,
    cacheControl: 60,
    acl: {
      readRoles: ["$all"],
      writeRoles: ["$admins"],
      deleteRoles: ["$admins"],
      metaReadRoles: ["$all"],
      metaWriteRoles: ["$admins"],
    },
    appKey: "custom value",
  };
  const r = await client.setStreamMetadata(s, meta);
  eq(r.success, true, "setStreamMetadata success");
  eq(r.nextExpectedRevision, 0n, "the metadata stream's revision");
  const got = await client.getStreamMetadata(s);
  eq(got.metadata, meta, "getStreamMetadata returns what was set");
  const r2 = await client.setStreamMetadata(s, { maxCount: 3 }, { streamState: 0n });
  eq(r2.nextExpectedRevision, 1n, "second metadata revision");
  eq((await client.getStreamMetadata(s)).metadata, { maxCount: 3 }, "replaced, not merged");
  await rejects(
    () => client.setStreamMetadata(s, { maxCount: 4 }, { streamState: 0n }),
    WrongExpectedVersionError,
    "setStreamMetadata with a stale expected revision",
  );
  eq((await client.getStreamMetadata(s)).metadata, { maxCount: 3 }, "unchanged by the refused write");
});

await check("metadata-max-count", async () => {
  const s = name("maxcount");
  const es = [0, 1, 2, 3, 4].map((i) => ev("MC", { i }));
  await client.appendToStream(s, es, { streamState: NO_STREAM });
  await client.setStreamMetadata(s, { maxCount: 2 });
  const fwd = await collect(client.readStream(s));
  eq(revs(fwd), [3n, 4n], "forwards: the last 2");
  eq(ids(fwd), [es[3].id, es[4].id], "their ids");
  const back = await collect(client.readStream(s, { direction: BACKWARDS, fromRevision: END }));
  eq(revs(back), [4n, 3n], "backwards: the last 2");
  const r = await client.appendToStream(s, ev("MC", { i: 5 }), { streamState: 4n });
  eq(r.nextExpectedRevision, 5n, "appending continues the revisions");
  eq(revs(await collect(client.readStream(s))), [4n, 5n], "still the last 2");
});

await check("metadata-truncate-before", async () => {
  const s = name("tb");
  await client.appendToStream(s, [0, 1, 2, 3, 4].map((i) => ev("TB", { i })), { streamState: NO_STREAM });
  await client.setStreamMetadata(s, { truncateBefore: 3 });
  eq(revs(await collect(client.readStream(s))), [3n, 4n], "events before revision 3 are gone");
});

await check("metadata-max-age", async () => {
  const s = name("maxage");
  await client.appendToStream(s, [ev("MA", { i: 0 }), ev("MA", { i: 1 })], { streamState: NO_STREAM });
  await client.setStreamMetadata(s, { maxAge: 1 });
  await sleep(2_500);
  eq((await collect(client.readStream(s))).length, 0, "events older than maxAge (1 s) are not read");
  const fresh = ev("MA", { i: 2 });
  const r = await client.appendToStream(s, fresh, { streamState: 1n });
  eq(r.nextExpectedRevision, 2n, "revisions continue");
  eq(ids(await collect(client.readStream(s))), [fresh.id], "a fresh event is read");
}, { timeout: 15_000 });

if (TLS) {
  await check("metadata-acl-effect", async () => {
    // A user made through the native CLI (the Node client has no user API);
    // `writer` lets it do what KurrentDB lets any authenticated user do with
    // streams that have no ACL of their own.
    const user = `bob-${R.slice(0, 12)}`;
    const password = `pw-${R}`;
    await strata(["user", "create", user, "--new-password", password, "--role", "writer"]);
    const asBob = { credentials: { username: user, password } };
    const open = name("acl-open");
    await client.appendToStream(open, ev("A", {}));
    eq((await collect(client.readStream(open, asBob))).length, 1, "bob reads a stream without ACL");
    await client.appendToStream(open, ev("A", {}), asBob);
    const closed = name("acl-closed");
    await client.appendToStream(closed, ev("A", {}));
    await client.setStreamMetadata(closed, { acl: { readRoles: ["$admins"], writeRoles: ["$admins"] } });
    await rejects(() => collect(client.readStream(closed, asBob)), AccessDeniedError, "bob reads a stream readable by $admins only");
    await rejects(() => client.appendToStream(closed, ev("A", {}), asBob), AccessDeniedError, "bob appends to a stream writable by $admins only");
    eq((await collect(client.readStream(closed))).length, 1, "admin still reads it");
    const named = name("acl-named");
    await client.appendToStream(named, ev("A", {}));
    await client.setStreamMetadata(named, { acl: { readRoles: [user], writeRoles: ["$admins"] } });
    eq((await collect(client.readStream(named, asBob))).length, 1, "bob reads a stream whose ACL names him");
    await rejects(() => client.appendToStream(named, ev("A", {}), asBob), AccessDeniedError, "bob appends where only $admins may write");
  });

  await check("tls-wrong-password", async () => {
    const bad = KurrentDBClient.connectionString(URL.replace(/:[^:@/]+@/, ":wrong-password@"));
    try {
      await rejects(() => bad.appendToStream(name("badpw"), ev("A", {})), AccessDeniedError, "append with a wrong password");
    } finally {
      await bad.dispose();
    }
  });
}

// ---------------------------------------------------------------- persistent subscriptions

const psSettings = (changes) => persistentSubscriptionToStreamSettingsFromDefaults(changes);

await check("persistent-stream-create-info-list-delete", async () => {
  const s = name("ps");
  await client.appendToStream(s, [ev("PS", { i: 0 }), ev("PS", { i: 1 })], { streamState: NO_STREAM });
  const g = `g-${RUN}`;
  await client.createPersistentSubscriptionToStream(s, g, psSettings({ startFrom: START }));
  await rejects(
    () => client.createPersistentSubscriptionToStream(s, g, psSettings({ startFrom: START })),
    PersistentSubscriptionExistsError,
    "creating the same group again",
  );
  const info = await client.getPersistentSubscriptionToStreamInfo(s, g);
  eq(info.eventSource, s, "eventSource");
  eq(info.groupName, g, "groupName");
  eq(info.connections.length, 0, "no consumers yet");
  const list = await client.listPersistentSubscriptionsToStream(s);
  eq(list.map((i) => [i.eventSource, i.groupName]), [[s, g]], "listPersistentSubscriptionsToStream");
  const all = await client.listAllPersistentSubscriptions();
  truthy(
    all.some((i) => i.eventSource === s && i.groupName === g),
    `listAllPersistentSubscriptions lacks ${s}/${g}: ${JSON.stringify(all.map((i) => [i.eventSource, i.groupName]))}`,
  );
  await client.deletePersistentSubscriptionToStream(s, g);
  await rejects(() => client.getPersistentSubscriptionToStreamInfo(s, g), PersistentSubscriptionDoesNotExistError, "getInfo after delete");
  await rejects(() => client.deletePersistentSubscriptionToStream(s, g), PersistentSubscriptionDoesNotExistError, "delete again");
});

await check("persistent-stream-info-settings", async () => {
  const s = name("ps-settings");
  const g = `gs-${RUN}`;
  // KurrentDB's info answers every setting the group was created with.
  const settings = psSettings({
    startFrom: 1n,
    maxRetryCount: 3,
    messageTimeout: 10_000,
    readBatchSize: 7,
    liveBufferSize: 300,
    historyBufferSize: 200,
    checkPointAfter: 3_000,
    checkPointLowerBound: 5,
    checkPointUpperBound: 50,
    maxSubscriberCount: 4,
    extraStatistics: true,
  });
  await client.createPersistentSubscriptionToStream(s, g, settings);
  const info = await client.getPersistentSubscriptionToStreamInfo(s, g);
  await client.deletePersistentSubscriptionToStream(s, g);
  eq(info.settings, settings, "settings");
});

await check("persistent-stream-two-consumers", async (defer) => {
  const s = name("ps2");
  const g = `g2-${RUN}`;
  await client.createPersistentSubscriptionToStream(s, g, psSettings({ startFrom: START }));
  const ack = (e, sub) => sub.ack(e);
  const c1 = client.subscribeToPersistentSubscriptionToStream(s, g, { bufferSize: 5 });
  defer(() => c1.unsubscribe());
  const c2 = client.subscribeToPersistentSubscriptionToStream(s, g, { bufferSize: 5 });
  defer(() => c2.unsubscribe());
  const f1 = follow(c1, { onEvent: ack });
  const f2 = follow(c2, { onEvent: ack });
  await f1.until((x) => x.confirmed, 5_000, "consumer 1 confirmed");
  await f2.until((x) => x.confirmed, 5_000, "consumer 2 confirmed");
  const es = Array.from({ length: 10 }, (_, i) => ev("W", { i }));
  await client.appendToStream(s, es, { streamState: NO_STREAM });
  await f1.until(() => f1.events.length + f2.events.length >= 10, 10_000, "10 events over both consumers");
  await sleep(500);
  const got = [...ids(f1.events), ...ids(f2.events)];
  eq(got.length, 10, "each event delivered once");
  eq([...got].sort(), es.map((e) => e.id).sort(), "every event delivered");
  truthy(f1.events.length > 0 && f2.events.length > 0, `both consumers got work (${f1.events.length} / ${f2.events.length})`);
  const info = await client.getPersistentSubscriptionToStreamInfo(s, g);
  eq(info.connections.length, 2, "two connections in the info");
  await client.deletePersistentSubscriptionToStream(s, g);
}, { timeout: 30_000 });

await check("persistent-stream-nack-retry-park-replay", async (defer) => {
  const s = name("ps3");
  const g = `g3-${RUN}`;
  await client.createPersistentSubscriptionToStream(s, g, psSettings({ startFrom: START }));
  const a = ev("A", {});
  const b = ev("B", {});
  let replayed = false;
  const sub = client.subscribeToPersistentSubscriptionToStream(s, g);
  defer(() => sub.unsubscribe());
  const st = follow(sub, {
    onEvent: async (e, c) => {
      if (e.event.id === a.id) {
        if (e.retryCount === 0) await c.nack("retry", "try again", e);
        else await c.ack(e);
      } else if (e.event.id === b.id) {
        if (!replayed) await c.nack("park", "park it", e);
        else await c.ack(e);
      }
    },
  });
  await st.until((x) => x.confirmed, 5_000, "confirmed");
  await client.appendToStream(s, [a, b], { streamState: NO_STREAM });
  const seen = (id) => st.events.filter((e) => e.event.id === id);
  await st.until(() => seen(a.id).length >= 2 && seen(b.id).length >= 1, 10_000, "A retried and B delivered");
  eq(seen(a.id).map((e) => e.retryCount), [0, 1], "A: delivered, nacked (retry), redelivered with retryCount 1");
  // Parking is asynchronous in KurrentDB (a write to the parked stream):
  // wait for the info to count it.
  let parked;
  for (let i = 0; i < 50; i++) {
    parked = (await client.getPersistentSubscriptionToStreamInfo(s, g)).stats.parkedMessageCount;
    if (parked === 1n) break;
    await sleep(100);
  }
  eq(parked, 1n, "parkedMessageCount");
  eq(seen(b.id).length, 1, "B parked: not redelivered");
  replayed = true;
  await client.replayParkedMessagesToStream(s, g);
  await st.until(() => seen(b.id).length >= 2, 10_000, "B replayed from the parked messages");
  await sleep(500);
  eq(seen(a.id).length, 2, "A not delivered again after its ack");
  eq(seen(b.id).length, 2, "B delivered once more after the replay");
  await client.deletePersistentSubscriptionToStream(s, g);
}, { timeout: 30_000 });

await check("persistent-errors", async (defer) => {
  const s = name("ps-none");
  const g = `none-${RUN}`;
  const e1 = await rejects(
    () => client.getPersistentSubscriptionToStreamInfo(s, g),
    PersistentSubscriptionDoesNotExistError,
    "getPersistentSubscriptionToStreamInfo of a missing group",
  );
  eq([e1.streamName, e1.groupName], [s, g], "error streamName, groupName");
  await rejects(
    () => client.replayParkedMessagesToStream(s, g),
    PersistentSubscriptionDoesNotExistError,
    "replayParkedMessagesToStream of a missing group",
  );
  await rejects(
    () => client.deletePersistentSubscriptionToStream(s, g),
    PersistentSubscriptionDoesNotExistError,
    "deletePersistentSubscriptionToStream of a missing group",
  );
  const sub = client.subscribeToPersistentSubscriptionToStream(s, g);
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 5_000);
    sub.once("error", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  truthy(
    st.error instanceof PersistentSubscriptionDoesNotExistError,
    `subscribeToPersistentSubscriptionToStream of a missing group: expected PersistentSubscriptionDoesNotExistError, got ${st.error ? `${st.error.constructor.name}: ${st.error.message}` : "no error in 5 s"}`,
  );
});

await check("persistent-all", async (defer) => {
  const V = `psall-${RUN}`;
  const g = `gall-${RUN}`;
  const start = await client.appendToStream(name("psall-before"), ev("Before", {}));
  await client.createPersistentSubscriptionToAll(
    g,
    persistentSubscriptionToAllSettingsFromDefaults({ startFrom: start.position }),
    { filter: streamNameFilter({ prefixes: [V] }) },
  );
  const info = await client.getPersistentSubscriptionToAllInfo(g);
  eq(info.eventSource, "$all", "eventSource");
  eq(info.groupName, g, "groupName");
  eq(info.settings.startFrom, start.position, "settings.startFrom");
  const list = await client.listPersistentSubscriptionsToAll();
  truthy(list.some((i) => i.groupName === g), `listPersistentSubscriptionsToAll lacks ${g}`);
  const es = [0, 1, 2].map((i) => ({ stream: `${V}-${i}`, e: ev("PA", { i }) }));
  const parkMe = ev("PA", { park: true });
  let replayed = false;
  const sub = client.subscribeToPersistentSubscriptionToAll(g);
  defer(() => sub.unsubscribe());
  const st = follow(sub, {
    onEvent: async (e, c) => {
      if (e.event.id === parkMe.id && !replayed) await c.nack("park", "park it", e);
      else await c.ack(e);
    },
  });
  await client.appendToStream(es[0].stream, es[0].e);
  await client.appendToStream(name("psall-noise"), ev("Noise", {}));
  await client.appendToStream(es[1].stream, es[1].e);
  await client.appendToStream(es[2].stream, es[2].e);
  await client.appendToStream(`${V}-park`, parkMe);
  await st.until((x) => x.events.length >= 4, 10_000, "4 filtered events");
  await sleep(500);
  eq(ids(st.events), [...es.map((x) => x.e.id), parkMe.id], "only the filtered events, in order");
  replayed = true;
  await client.replayParkedMessagesToAll(g);
  await st.until((x) => x.events.length >= 5, 10_000, "the parked event replayed");
  eq(st.events[4].event.id, parkMe.id, "the replayed event");
  await client.deletePersistentSubscriptionToAll(g);
  await rejects(() => client.getPersistentSubscriptionToAllInfo(g), PersistentSubscriptionDoesNotExistError, "getInfo after delete");
}, { timeout: 30_000 });

await check("persistent-all-info-settings", async () => {
  const g = `galls-${RUN}`;
  const settings = persistentSubscriptionToAllSettingsFromDefaults({ startFrom: END });
  await client.createPersistentSubscriptionToAll(g, settings, {
    filter: eventTypeFilter({ prefixes: [`Nothing${R}`] }),
  });
  const info = await client.getPersistentSubscriptionToAllInfo(g);
  await client.deletePersistentSubscriptionToAll(g);
  eq(info.settings, settings, "settings (the defaults, from END)");
});

// ---------------------------------------------------------------- native interleaving

await check("native-append-node-read", async () => {
  const s = name("native-in");
  const id1 = randomUUID();
  const id2 = randomUUID();
  await strata(["append", s, "--type", "NativeOne", "--id", id1, "--data", '{"n":1,"s":"x"}', "--metadata", '{"m":1}', "--expected", "no-stream", "--json"]);
  await strata(["append", s, "--type", "NativeTwo", "--id", id2, "--data", '{"n":2}', "--expected", "0", "--json"]);
  const read = await collect(client.readStream(s));
  eq(ids(read), [id1, id2], "ids in order");
  eq(revs(read), [0n, 1n], "revisions");
  eq(read.map((e) => e.event.type), ["NativeOne", "NativeTwo"], "types");
  eq(read.map((e) => e.event.data), [{ n: 1, s: "x" }, { n: 2 }], "data");
  eq(read.map((e) => e.event.isJson), [true, true], "isJson");
  eq(read[0].event.metadata, { m: 1 }, "metadata");
  const e3 = ev("NodeThree", { n: 3 });
  const r = await client.appendToStream(s, e3, { streamState: 1n });
  eq(r.nextExpectedRevision, 2n, "Node continues the native revisions");
  const native = jsonLines(await strata(["read", s, "--json"]));
  eq(native.map((l) => l.id), [id1, id2, e3.id], "native read sees all three in order");
});

await check("node-append-native-read", async () => {
  const s = name("native-out");
  const j = jsonEvent({ id: randomUUID(), type: "NodeJson", data: { a: [1, 2], t: "ü" }, metadata: { trace: "x" } });
  const b = binaryEvent({ id: randomUUID(), type: "NodeBin", data: Uint8Array.from([0xff, 0x00, 0x01, 0x02]) });
  await client.appendToStream(s, [j, b], { streamState: NO_STREAM });
  const lines = jsonLines(await strata(["read", s, "--json"]));
  eq(lines.map((l) => l.id), [j.id, b.id], "ids in order");
  eq(lines.map((l) => l.revision), [0, 1], "revisions");
  eq(lines.map((l) => l.type), ["NodeJson", "NodeBin"], "types");
  eq(lines.map((l) => l.content_type), ["application/json", "application/octet-stream"], "content types");
  eq(lines[0].data, { a: [1, 2], t: "ü" }, "JSON data");
  eq(lines[0].metadata, { trace: "x" }, "JSON metadata");
  eq([lines[1].data, lines[1].data_encoding], ["ff000102", "hex"], "binary data");
});

await check("native-node-interleaved-order", async (defer) => {
  const X = `inter-${RUN}`;
  const sub = client.subscribeToStream(`${X}-n`, { fromRevision: START });
  defer(() => sub.unsubscribe());
  const st = follow(sub);
  const want = [];
  for (let i = 0; i < 2; i++) {
    const e = ev("FromNode", { i });
    await client.appendToStream(`${X}-n`, e);
    want.push(e.id);
    const id = randomUUID();
    await strata(["append", `${X}-s`, "--type", "FromNative", "--id", id, "--data", JSON.stringify({ i })]);
    want.push(id);
  }
  const nodeAll = ids(await collect(client.readAll({ filter: streamNameFilter({ prefixes: [X] }) })));
  eq(nodeAll, want, "Node readAll: both sides' events in commit order");
  const nativeAll = jsonLines(await strata(["read", "$all", "--filter-stream", X, "--json"]));
  eq(nativeAll.map((l) => l.id), want, "native read of $all: the same order");
  const live = randomUUID();
  await strata(["append", `${X}-n`, "--type", "FromNative", "--id", live, "--data", "{}"]);
  await st.until((x) => x.events.length >= 3, 5_000, "a native append reaches a Node subscription");
  eq(ids(st.events), [want[0], want[2], live], "Node subscription: its own two events, then the native one");
});

// ---------------------------------------------------------------- discovery

await check("gossip-discover-connection", async () => {
  const discoverUrl = URL.replace(/^kurrentdb:\/\//, "kurrentdb+discover://");
  const c = KurrentDBClient.connectionString(discoverUrl);
  try {
    const s = name("discover");
    const e = ev("D", {});
    const r = await c.appendToStream(s, e, { streamState: NO_STREAM });
    eq(r.nextExpectedRevision, 0n, "append through a gossip-discovered connection");
    eq(ids(await collect(c.readStream(s))), [e.id], "read through a gossip-discovered connection");
  } finally {
    await c.dispose();
  }
});

// ---------------------------------------------------------------- end

clearTimeout(watchdog);
await Promise.race([client.dispose(), sleep(3_000)]);
const { passed, failed } = summary();
console.log(`${TARGET}: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
