"""The little framework of the KurrentDB Python checks: a registry of checks,
the context each gets (its target's client, URLs, CA, the native CLI), exact
assertions that say what they expected, and a runner that bounds every check
in time and prints `ok <target> <check>` / `FAIL <target> <check>: <why>`.

Every check is written to KurrentDB's documented behaviour (the client's
README and its own test suite run against KurrentDB), not to what Strata
happens to do.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlparse

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.events import RecordedEvent

# Every check must finish within this many seconds (its gRPC calls carry
# shorter deadlines of their own); a check still running then is a FAIL.
CHECK_TIMEOUT = float(os.environ.get("KDB_CHECK_TIMEOUT", "30"))
# Deadline of one unary call and of one subscription's whole life.
CALL_TIMEOUT = 10.0
SUB_TIMEOUT = 10.0


class CheckFailed(AssertionError):
    pass


@dataclass
class Target:
    name: str
    url: str
    tls: bool
    ca: str | None
    admin_password: str | None
    strata: str
    native_url: str
    work: str
    port: int

    def native_auth_args(self) -> list[str]:
        if not self.tls:
            return []
        assert self.ca is not None and self.admin_password is not None
        return ["--ca", self.ca, "--user", "admin", "--password", self.admin_password]

    def url_without_ca(self) -> str:
        """The target's URL without its tlsCaFile option."""
        parsed = urlparse(self.url)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        query = {k: v for k, v in query.items() if k.lower() != "tlscafile"}
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return parsed._replace(query=q).geturl()


@dataclass
class Ctx:
    target: Target
    client: KurrentDBClient
    steps: list[str] = field(default_factory=list)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def step(self, text: str) -> None:
        self.steps.append(text)

    def uniq(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex}"

    def new_client(self, url: str | None = None, **kwargs: Any) -> KurrentDBClient:
        c = KurrentDBClient(url or self.target.url, **kwargs)
        self.cleanup.append(c.close)
        return c

    # --- the native CLI --------------------------------------------------
    def strata(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [self.target.strata, *args, "--url", self.target.native_url,
               *self.target.native_auth_args()]
        self.step("native: " + " ".join(_redact(cmd)))
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                              timeout=CALL_TIMEOUT, check=False)

    def strata_ok(self, *args: str) -> str:
        proc = self.strata(*args)
        if proc.returncode != 0:
            raise CheckFailed(f"native CLI exited {proc.returncode}: "
                              f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def strata_json(self, *args: str) -> list[dict[str, Any]]:
        out = self.strata_ok(*args, "--json")
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def _redact(cmd: list[str]) -> list[str]:
    out, hide = [], False
    for a in cmd:
        out.append("***" if hide else a)
        hide = a in ("--password", "--new-password")
    return out


# --- registry ---------------------------------------------------------------

CHECKS: list[tuple[str, Callable[[Ctx], None]]] = []


def check(name: str) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    def deco(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        CHECKS.append((name, fn))
        return fn
    return deco


# --- assertions ---------------------------------------------------------------

def eq(actual: Any, expected: Any, what: str) -> None:
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def true(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def raises(exc: type[BaseException] | tuple[type[BaseException], ...],
           fn: Callable[[], Any], what: str) -> BaseException:
    try:
        result = fn()
    except exc as e:  # the expected error
        return e
    except Exception as e:  # noqa: BLE001 - any other error is the failure
        names = exc.__name__ if isinstance(exc, type) else "/".join(x.__name__ for x in exc)
        raise CheckFailed(f"{what}: expected {names}, got {describe(e)}") from e
    names = exc.__name__ if isinstance(exc, type) else "/".join(x.__name__ for x in exc)
    raise CheckFailed(f"{what}: expected {names}, nothing raised (returned {_short(result)})")


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 300 else s[:300] + "…"


_STATUS = re.compile(r"status = StatusCode\.(\w+)")
_DETAILS = re.compile(r'details = "(.*?)"\n', re.S)


def describe(e: BaseException) -> str:
    """One line for an exception, with the gRPC status and details if any."""
    text = str(e)
    status = _STATUS.search(text)
    if status:
        details = _DETAILS.search(text + "\n")
        return (f"{type(e).__name__}({status.group(1)}: "
                f"{details.group(1) if details else '?'!r})")
    text = " ".join(text.split())
    return f"{type(e).__name__}({text!r})" if text else type(e).__name__


# --- helpers used by several checks ----------------------------------------

def ev(kind: str, data: Any = None, metadata: bytes = b"", **kw: Any) -> NewEvent:
    """A new event with JSON data (a fresh id unless given)."""
    if data is None:
        data = {"kind": kind, "n": uuid.uuid4().hex[:8]}
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return NewEvent(type=kind, data=raw, metadata=metadata, **kw)


def append_each(ctx: Ctx, stream: str, events: Iterable[NewEvent],
                first: int | StreamState = StreamState.NO_STREAM) -> list[int]:
    """Appends events one by one (one NewEvent per call: the client sends it
    with the `Append` rpc), the first with `first` and each next one with the
    exact revision it must follow; returns their commit positions. Checks that
    are not about BatchAppend set up their data this way, so that they test
    what they are about."""
    positions = []
    expected: int | StreamState = first
    for e in events:
        ctx.step(f"append_to_stream({stream!r}, events=NewEvent({e.type}), "
                 f"current_version={expected})")
        positions.append(ctx.client.append_to_stream(
            stream, events=e, current_version=expected, timeout=CALL_TIMEOUT))
        if expected is StreamState.NO_STREAM:
            expected = 0
        elif isinstance(expected, int):
            expected += 1
        # ANY and EXISTS stay as they are
    return positions


def ids(events: Iterable[Any]) -> list[uuid.UUID]:
    return [e.id for e in events]


def take(sub: Iterable[Any], n: int, *, what: str,
         accept: Callable[[Any], bool] | None = None) -> list[Any]:
    """The next n items of a subscription that `accept` (default: events)."""
    accept = accept or (lambda x: type(x) is RecordedEvent)
    got: list[Any] = []
    it = iter(sub)
    while len(got) < n:
        try:
            item = next(it)
        except StopIteration:
            raise CheckFailed(f"{what}: subscription ended after {len(got)} of {n} items") from None
        except Exception as e:  # noqa: BLE001
            raise CheckFailed(f"{what}: after {len(got)} of {n} items: {describe(e)}") from e
        if accept(item):
            got.append(item)
    return got


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.timezone.utc)


def wait_until(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{what} (not within {timeout}s; last: {_short(last)})")
        time.sleep(interval)


# --- runner -----------------------------------------------------------------

def run_checks(target: Target, only: set[str] | None = None) -> tuple[int, int]:
    passed = failed = 0
    client = KurrentDBClient(target.url)
    for name, fn in CHECKS:
        if only and name not in only:
            continue
        ctx = Ctx(target=target, client=client)
        result: dict[str, BaseException | None] = {}

        def body() -> None:
            try:
                fn(ctx)
                result["e"] = None
            except BaseException as e:  # noqa: BLE001
                result["e"] = e

        started = time.monotonic()
        t = threading.Thread(target=body, name=f"check-{name}", daemon=True)
        t.start()
        t.join(CHECK_TIMEOUT)
        took = time.monotonic() - started
        for c in reversed(ctx.cleanup):
            try:
                c()
            except Exception:  # noqa: BLE001
                pass
        where = f" [last call: {ctx.steps[-1]}]" if ctx.steps else ""
        if t.is_alive():
            failed += 1
            print(f"FAIL {target.name} {name}: still running after {CHECK_TIMEOUT:.0f}s{where}",
                  flush=True)
            continue
        e = result.get("e")
        if e is None:
            passed += 1
            print(f"ok {target.name} {name} ({took:.1f}s)", flush=True)
        else:
            failed += 1
            why = str(e) if isinstance(e, CheckFailed) else f"unexpected {describe(e)}"
            print(f"FAIL {target.name} {name}: {why}{where}", flush=True)
            if os.environ.get("KDB_VERBOSE"):
                traceback.print_exception(e, file=sys.stderr)
    try:
        client.close()
    except Exception:  # noqa: BLE001
        pass
    return passed, failed


def target_from_env(name: str) -> Target:
    def need(var: str) -> str:
        v = os.environ.get(var)
        if not v:
            raise SystemExit(f"kurrentdb python checks: {var} is not set")
        return v

    url = need(f"KDB_URL_{name}")
    parsed = urlparse(url)
    query = {k.lower(): v[0] for k, v in parse_qs(parsed.query).items()}
    tls = query.get("tls", "true").lower() == "true"
    return Target(
        name=name,
        url=url,
        tls=tls,
        ca=os.environ.get("KDB_CA") if tls else None,
        admin_password=os.environ.get("KDB_ADMIN_PASSWORD") if tls else None,
        strata=need("KDB_STRATA"),
        native_url=need(f"KDB_NATIVE_{name}"),
        work=need("KDB_WORK"),
        port=int(parsed.port or 2113),
    )
