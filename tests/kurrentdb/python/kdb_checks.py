"""Runs every check against the targets named on the command line (default:
KDB_TARGETS), prints one line per check and a summary, exits 1 if any check
failed. KDB_ONLY="check1 check2" runs only those (for debugging)."""

from __future__ import annotations

import os
import sys

# Each module registers its checks, which run in this order.
import check_streams  # noqa: F401  isort: skip
import check_subscriptions  # noqa: F401  isort: skip
import check_metadata  # noqa: F401  isort: skip
import check_persistent  # noqa: F401  isort: skip
import check_native  # noqa: F401  isort: skip
import check_eventsourcing  # noqa: F401  isort: skip
from harness import CHECKS, run_checks, target_from_env


def main() -> int:
    names = sys.argv[1:] or os.environ.get("KDB_TARGETS", "").split()
    if not names:
        print("kurrentdb python checks: no targets (KDB_TARGETS is empty)", flush=True)
        return 2
    only = set(os.environ.get("KDB_ONLY", "").split()) or None
    total_ok = total_failed = 0
    for name in names:
        ok, failed = run_checks(target_from_env(name), only)
        total_ok += ok
        total_failed += failed
    print(f"kurrentdb python: {total_ok} passed, {total_failed} failed "
          f"({len(CHECKS)} checks x {len(names)} targets)", flush=True)
    return 1 if total_failed or total_ok == 0 else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A check that timed out may leave a thread blocked in gRPC: do not wait.
    os._exit(code)
