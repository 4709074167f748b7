// Small harness for the checks: every check is bounded by a timeout, prints
// one line (`ok <target> <check>` or `FAIL <target> <check>: <why>`), and
// closes what it opened (subscriptions) whatever happens.
import { execFile } from "node:child_process";
import { isDeepStrictEqual, inspect } from "node:util";

export const TARGET = process.env.KDB_TARGET ?? "?";

const results = { passed: 0, failed: 0 };
export const summary = () => ({ ...results });

/** One line describing an error (its class, gRPC code, message). */
export function describe(err) {
  if (err == null) return String(err);
  if (!(err instanceof Error)) return oneLine(inspect(err, { depth: 4 }));
  const name = err.constructor?.name ?? err.name;
  const code = err.code !== undefined ? ` (code ${err.code})` : "";
  const type = err.type !== undefined ? ` [type ${err.type}]` : "";
  const fields = ["streamName", "groupName", "expectedState", "actualState"]
    .filter((k) => err[k] !== undefined && err[k] !== "")
    .map((k) => `${k}=${typeof err[k] === "bigint" ? `${err[k]}n` : err[k]}`);
  const extra = fields.length ? ` {${fields.join(", ")}}` : "";
  return oneLine(`${name}${type}${code}${extra}: ${err.message}`);
}

const oneLine = (s) => String(s).replace(/\s*\n\s*/g, " | ").slice(0, 1500);

const show = (v) =>
  oneLine(
    inspect(v, { depth: 6, breakLength: Infinity, maxArrayLength: 50 }),
  );

export class CheckFailure extends Error {}

export function fail(msg) {
  throw new CheckFailure(msg);
}

/** Exact equality (deep, strict: bigint 3n is not number 3). */
export function eq(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    fail(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

export function truthy(cond, what) {
  if (!cond) fail(what);
}

/**
 * Runs `fn` and requires it to reject with an instance of `Class`; returns
 * the error so its fields can be checked.
 */
export async function rejects(fn, Class, what) {
  let value;
  try {
    value = await fn();
  } catch (err) {
    if (err instanceof Class) return err;
    fail(`${what}: expected ${Class.name}, got ${describe(err)}`);
  }
  fail(`${what}: expected ${Class.name}, got success ${show(value)}`);
}

/** Collects an async iterable (a read) into an array. */
export async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs one check with a timeout. `fn` gets a `defer(cleanup)` to register
 * what must be closed afterwards (run in reverse order, each bounded).
 */
export async function check(name, fn, { timeout = 20_000 } = {}) {
  const cleanups = [];
  const defer = (f) => cleanups.push(f);
  let timer;
  const started = Date.now();
  try {
    await Promise.race([
      fn(defer),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new CheckFailure(`timed out after ${timeout} ms`)),
          timeout,
        );
      }),
    ]);
    results.passed++;
    console.log(`ok ${TARGET} ${name}`);
  } catch (err) {
    results.failed++;
    const why = err instanceof CheckFailure ? oneLine(err.message) : describe(err);
    console.log(`FAIL ${TARGET} ${name}: ${why}`);
  } finally {
    clearTimeout(timer);
    for (const f of cleanups.reverse()) {
      await Promise.race([
        Promise.resolve().then(f).catch(() => {}),
        sleep(2_000),
      ]);
    }
    if (process.env.KDB_VERBOSE) {
      console.error(`  (${name}: ${Date.now() - started} ms)`);
    }
  }
}

/**
 * Follows a subscription (catch-up or persistent): collects its events,
 * remembers its error, `caughtUp` and `confirmation`, and lets a check wait
 * for a condition with a timeout.
 */
export function follow(sub, { onEvent } = {}) {
  const state = {
    events: [],
    error: null,
    caughtUp: 0,
    confirmed: false,
  };
  let wake = () => {};
  const notify = () => wake();
  sub.on("data", (ev) => {
    state.events.push(ev);
    if (onEvent) {
      Promise.resolve()
        .then(() => onEvent(ev, sub))
        .catch((err) => {
          state.error ??= err;
          notify();
        });
    }
    notify();
  });
  sub.on("error", (err) => {
    state.error ??= err;
    notify();
  });
  sub.on("caughtUp", () => {
    state.caughtUp++;
    notify();
  });
  sub.on("confirmation", () => {
    state.confirmed = true;
    notify();
  });
  state.until = (pred, ms, what) =>
    new Promise((resolve, reject) => {
      // Re-tested on every event and every 50 ms (a predicate may look at
      // more than the subscription, e.g. checkpoints).
      const poll = setInterval(() => test(), 50);
      const timer = setTimeout(() => {
        clearInterval(poll);
        wake = () => {};
        reject(
          new CheckFailure(
            `${what}: not within ${ms} ms (got ${state.events.length} events${
              state.error ? `, error ${describe(state.error)}` : ""
            })`,
          ),
        );
      }, ms);
      const test = () => {
        if (state.error) {
          clearTimeout(timer);
          clearInterval(poll);
          wake = () => {};
          reject(
            new CheckFailure(`${what}: subscription failed: ${describe(state.error)}`),
          );
          return;
        }
        let ok = false;
        try {
          ok = pred(state);
        } catch (err) {
          clearTimeout(timer);
          clearInterval(poll);
          reject(err);
          return;
        }
        if (ok) {
          clearTimeout(timer);
          clearInterval(poll);
          wake = () => {};
          resolve(state);
        }
      };
      wake = test;
      test();
    });
  return state;
}

/** Runs the native `strata` CLI; resolves with stdout, rejects on a non-zero exit. */
export function strata(args, { timeout = 15_000 } = {}) {
  const bin = process.env.KDB_STRATA;
  const native = process.env[`KDB_NATIVE_${TARGET}`];
  if (!bin || !native) fail("KDB_STRATA or KDB_NATIVE_<target> not set");
  const full = [...args, "--url", native];
  if (native.startsWith("https:")) {
    full.push("--ca", process.env.KDB_CA);
    full.push("--user", "admin", "--password", process.env.KDB_ADMIN_PASSWORD);
  }
  return new Promise((resolve, reject) => {
    execFile(bin, full, { timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(
          new CheckFailure(
            `strata ${args.join(" ")}: ${err.killed ? "timed out" : `exit ${err.code}`}: ${oneLine(stderr)}`,
          ),
        );
      } else {
        resolve(stdout);
      }
    });
  });
}

/** The lines of `--json` output, parsed. */
export const jsonLines = (stdout) =>
  stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l));
