"""In-sandbox LiveCodeBench test harness (stdlib only; copied into the sandbox as ``main.py``).

Reads ``tests.json`` (inputs, outputs, fn_name, timeout, nonce, stop_on_first_failure) and
``solution.py``; grades with the official ``lcb_runner`` semantics (our implementation):

- call-based (``fn_name`` set): the solution is executed after LiveCodeBench's import prelude;
  ``Solution()`` is instantiated when the code contains ``class Solution``; every input line is a
  JSON value (one per argument); a tuple result becomes a list; ``==`` against the JSON output.
- stdin/stdout: a trailing ``if __name__ == '__main__':`` block is unwrapped, every non-import
  statement is wrapped into ``wrapped_function()``, which runs with ``sys.stdin``/``input``/
  ``open`` fed from the test input and ``sys.stdout`` captured; ``SystemExit`` is swallowed;
  outputs compared line-wise after ``strip`` with a ``Decimal`` token fallback.
- every test has a ``timeout``-second alarm (compilation too); the first failure stops the run
  unless ``stop_on_first_failure`` is false.

One JSON record per test is written to the original stdout on its own line, prefixed by a nonce.
"""

import ast
import builtins
import faulthandler
import io
import json
import signal
import sys
import time
from decimal import Decimal
from types import ModuleType

IMPORT_PRELUDE = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\n"
    "from functools import *\nfrom operator import *\nfrom io import *\nfrom sys import *\n"
    "from json import *\nfrom builtins import *\nfrom typing import *\nimport string\nimport re\n"
    "import datetime\nimport collections\nimport heapq\nimport bisect\nimport copy\nimport math\n"
    "import random\nimport statistics\nimport itertools\nimport functools\nimport operator\n"
    "import io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n"
)


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _alarm(seconds):
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _unwrap_main(code):
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            code = ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:
        pass
    return code


def _wrap_function(code):
    try:
        tree = ast.parse(code)
        imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        others = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
        fn = ast.FunctionDef(
            name="wrapped_function",
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=others, decorator_list=[], lineno=-1)
        return IMPORT_PRELUDE + "\n" + ast.unparse(imports) + "\n" + ast.unparse(fn)
    except Exception:
        return code


def _compile(code, timeout):
    _alarm(timeout)
    try:
        module = ModuleType("tmp_sol", "")
        exec(code, module.__dict__)
        return module.Solution() if "class Solution" in code else module
    finally:
        _alarm(0)


def _decimals(line):
    try:
        return [Decimal(tok) for tok in line.split()]
    except Exception:
        return None


def _lines(text):
    return [line.strip() for line in text.strip().split("\n")]


def stdio_equal(got, want):
    g, w = _lines(got), _lines(want)
    if len(g) != len(w):
        return False
    for a, b in zip(g, w):
        if a == b:
            continue
        da, db = _decimals(a), _decimals(b)
        if da is None or db is None or da != db:
            return False
    return True


def _short(value, n=300):
    s = value if isinstance(value, str) else repr(value)
    return s if len(s) <= n else s[: n // 2] + "...(truncated)..." + s[-n // 2:]


def _run_stdin(method, text):
    """Run ``method`` with stdin, ``input`` and ``open`` fed from ``text`` (the official harness
    patches the same entry points with ``unittest.mock``; done by hand here because importing
    ``unittest.mock`` costs more than most test runs)."""
    lines = iter(text.split("\n"))
    fake = io.StringIO(text)
    fake.readline = lambda *a: next(lines)
    fake.readlines = lambda *a: text.split("\n")
    fake.read = lambda *a: text
    saved_stdin, saved_open = sys.stdin, builtins.open
    sys.stdin = fake
    builtins.open = lambda *a, **k: io.StringIO(text)
    try:
        return method()
    except SystemExit:
        pass
    finally:
        sys.stdin, builtins.open = saved_stdin, saved_open


def _error_status(exc):
    if isinstance(exc, _Timeout):
        return "timeout"
    if isinstance(exc, MemoryError):
        return "memory"
    return "runtime_error"


def main():
    with open("tests.json") as f:
        spec = json.load(f)
    with open("solution.py") as f:
        code = f.read()
    out = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace")
    nonce = spec["nonce"]

    compare = spec.get("compare", True)  # False: report raw outputs, the caller compares

    def emit(index, status, elapsed=0.0, detail="", output=None):
        record = {"index": index, "status": status, "time": elapsed, "detail": detail}
        if output is not None:
            record["output"] = output
        out.write("\n" + nonce + json.dumps(record) + "\n")
        out.flush()

    signal.signal(signal.SIGALRM, _on_alarm)
    timeout = float(spec["timeout"])
    inputs, outputs, fn_name = spec["inputs"], spec["outputs"], spec.get("fn_name")
    stop = spec.get("stop_on_first_failure", True)
    try:
        sys.set_int_max_str_digits(50000)
    except AttributeError:
        pass
    try:
        if fn_name:
            solution = _compile(IMPORT_PRELUDE + "\n\n" + code, timeout)
            method = getattr(solution, fn_name)
            inputs = [[json.loads(line) for line in inp.split("\n")] for inp in inputs]
            outputs = [json.loads(o) for o in outputs] if compare else outputs
        else:
            method = _compile(_wrap_function(_unwrap_main(code)), timeout).wrapped_function
    except BaseException as exc:  # noqa: BLE001
        for i in range(1 if stop else len(inputs)):
            emit(i, _error_status(exc), 0.0, "compilation failed: " + _short(repr(exc)))
        return
    for i, (inp, want) in enumerate(zip(inputs, outputs)):
        saved = sys.stdout
        sys.stdout = captured = io.StringIO()
        status, detail, raw = "passed", "", None
        start = time.perf_counter()
        faulthandler.enable()
        _alarm(timeout)
        try:
            if fn_name:
                got = method(*inp)
                _alarm(0)
                if isinstance(got, tuple):
                    got = list(got)
                if not compare:
                    try:
                        raw = json.dumps(got)
                    except (TypeError, ValueError):
                        raw = repr(got)
                elif got != want:
                    status, detail = "wrong_answer", "got " + _short(got)
            else:
                _run_stdin(method, inp)
                _alarm(0)
                if not compare:
                    raw = captured.getvalue()
                elif not stdio_equal(captured.getvalue(), want):
                    status, detail = "wrong_answer", "got " + _short(captured.getvalue())
        except BaseException as exc:  # noqa: BLE001
            _alarm(0)
            status, detail = _error_status(exc), _short(repr(exc))
        finally:
            _alarm(0)
            faulthandler.disable()
            sys.stdout = saved
        emit(i, status, time.perf_counter() - start, detail, raw)
        if status != "passed" and stop:
            return


main()
