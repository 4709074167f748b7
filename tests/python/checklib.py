"""Runs the `check_*` methods of a checks object, as both Python checks do."""

import traceback


def run_checks(checks, label):
    """Runs every `check_*` method of `checks` in definition order (later
    checks may rely on what earlier ones wrote), reports each, and returns
    the process exit status: 0 when all passed."""
    cls = type(checks)
    names = [n for n in dir(checks) if n.startswith("check_")]
    names.sort(key=lambda n: getattr(cls, n).__code__.co_firstlineno)
    passed = failed = 0
    for name in names:
        try:
            getattr(checks, name)()
            passed += 1
            print(f"ok    {name}")
        except Exception:  # noqa: BLE001 - report every failure, run the rest
            failed += 1
            print(f"FAIL  {name}")
            traceback.print_exc()
    print(f"{label}: {passed} passed, {failed} failed")
    return 1 if failed else 0
