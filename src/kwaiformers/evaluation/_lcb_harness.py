"""In-sandbox LiveCodeBench test harness (stdlib only; copied into the sandbox as ``main.py``).

Reads ``tests.json`` (inputs, outputs, fn_name, timeout, nonce, stop_on_first_failure, compare)
and ``solution.py`` and grades with the semantics of the official grader
(``lcb_runner/evaluation/testing_util.py``; differentially tested against PyPI
``nvidia-livecodebench`` in ``tests/test_lcb_differential.py``):

- ``reliability_guard()`` first: ``quit``, ``help``, ``os.kill/system/remove/fork/getcwd/chdir``
  and friends, ``shutil.rmtree/move/chown``, ``subprocess.Popen`` become ``None``;
  ``import resource/psutil/joblib/ipdb/tkinter`` fails; ``exit`` stays.
- call-based (``fn_name`` set): LiveCodeBench's import prelude + the code is executed as a
  module (``Solution()`` when the code contains ``class Solution``); every input line is a JSON
  value (one per argument); a tuple result becomes a list; the verdict is ``result == expected``
  (``==`` with the result on the left, as the official grader).
- stdin/stdout: a trailing ``if __name__ == '__main__':`` block is unwrapped, imports are hoisted
  and every other statement goes into ``wrapped_function()``; each test runs it with the official
  ``call_method`` patches, in the official order: ``read``/``readlines``/``readline`` are patched on
  the *real* ``sys.stdin`` object (what ``from sys import stdin`` and the prelude's
  ``from sys import *`` bound), then ``sys.stdin`` becomes a ``StringIO`` of the input (so
  ``sys.stdin.readline()`` keeps the newline and ``input()`` and iteration share its position),
  then ``open`` becomes ``unittest.mock.mock_open(read_data=input)`` (imported on first use);
  ``SystemExit`` is swallowed; outputs compared line-wise after ``strip`` with a ``Decimal``
  token fallback.
- a per-test alarm of ``timeout`` seconds (compilation too); an exception whose ``repr``
  contains ``timeoutexception`` is a timeout, every other ``Exception`` a runtime error, also
  during compilation (so a module-level infinite loop of a call-based solution is a runtime
  error). A ``BaseException`` that is not an ``Exception`` (and not a swallowed ``SystemExit``)
  ends the official grading process (verdict -1): reported here as ``killed``.

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
from io import StringIO
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


class TimeoutException(Exception):
    pass


def timeout_handler(signum, frame):
    print("timeout occured: alarm went off")
    raise TimeoutException


def _alarm(seconds):
    signal.setitimer(signal.ITIMER_REAL, seconds)


class _ProcessEnded(Exception):
    """A BaseException escaped the program: the official grading process would have died."""


def reliability_guard():
    """The official guard (no memory limit: the sandbox sets its own)."""
    faulthandler.disable()
    builtins.quit = None
    import os
    import shutil
    import subprocess

    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid",
                 "fork", "forkpty", "killpg", "rename", "renames", "truncate", "replace",
                 "unlink", "fchmod", "fchown", "chmod", "chown", "chroot", "lchflags", "lchmod",
                 "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


class Capturing(list):
    """The official stdout capture (``close()`` of the capture raises, as there)."""

    def __enter__(self):
        self._stdout = sys.stdout
        sys.stdout = self._stringio = StringIO()
        self._stringio.close = lambda x: 1
        return self

    def __exit__(self, *args):
        self.append(self._stringio.getvalue())
        del self._stringio
        sys.stdout = self._stdout


def clean_if_name(code):
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            code = ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:
        pass
    return code


def make_function(code):
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


class _Patch:
    """``unittest.mock.patch(target.attribute, new)`` enter/exit semantics (``mock`` itself is
    imported lazily: it costs more than most test runs)."""

    _MISSING = object()

    def __init__(self, target, attribute, new):
        self.target, self.attribute, self.new = target, attribute, new

    def __enter__(self):
        try:
            self.original = self.target.__dict__[self.attribute]
            self.local = True
        except (AttributeError, KeyError):
            self.original = getattr(self.target, self.attribute)
            self.local = False
        setattr(self.target, self.attribute, self.new)

    def __exit__(self, *exc):
        if self.local:
            setattr(self.target, self.attribute, self.original)
        else:
            delattr(self.target, self.attribute)
            if not hasattr(self.target, self.attribute):
                setattr(self.target, self.attribute, self.original)
        return False


class _LazyMockOpen:
    """``mock_open(read_data=data)``, created on the first call."""

    def __init__(self, data, real_open):
        self.data, self.real_open, self.mock = data, real_open, None

    def __call__(self, *args, **kwargs):
        if self.mock is None:
            patched, builtins.open = builtins.open, self.real_open
            try:
                from unittest.mock import mock_open
            finally:
                builtins.open = patched
            self.mock = mock_open(read_data=self.data)
        return self.mock(*args, **kwargs)


_REAL_OPEN = builtins.open


def call_method(method, inputs):
    if isinstance(inputs, list):
        inputs = "\n".join(inputs)
    lines = iter(inputs.split("\n"))
    new_stdin = StringIO(inputs)
    new_open = _LazyMockOpen(inputs, _REAL_OPEN)
    entered = []
    try:
        # the official decorator stack, entered bottom-up
        for target, attribute, new in (
                (None, "read", lambda *args: inputs),
                (None, "readlines", lambda *args: inputs.split("\n")),
                (None, "readline", lambda *args: next(lines)),
                (sys, "stdin", new_stdin),
                (builtins, "open", new_open)):
            patch = _Patch(sys.stdin if target is None else target, attribute, new)
            patch.__enter__()
            entered.append(patch)
        try:
            return method()
        except SystemExit:
            pass
    finally:
        for patch in reversed(entered):
            patch.__exit__()


def compile_code(code, timeout):
    _alarm(timeout)
    try:
        tmp_sol = ModuleType("tmp_sol", "")
        exec(code, tmp_sol.__dict__)
        compiled = tmp_sol.Solution() if "class Solution" in code else tmp_sol
        assert compiled is not None
    finally:
        _alarm(0)
    return compiled


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
    try:
        s = value if isinstance(value, str) else repr(value)
    except Exception as exc:
        s = f"<unprintable: {exc!r}>"
    return s if len(s) <= n else s[: n // 2] + "...(truncated)..." + s[-n // 2:]


def _plain_json(value, depth=0):
    if depth > 200:
        return False
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) is list:
        return all(_plain_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain_json(v, depth + 1) for k, v in value.items())
    return False


def _error_status(exc):
    if isinstance(exc, _ProcessEnded) or not isinstance(exc, Exception):
        return "killed"
    if "timeoutexception" in repr(exc).lower():
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

    signal.signal(signal.SIGALRM, timeout_handler)
    reliability_guard()
    timeout = float(spec["timeout"])
    inputs, outputs, fn_name = spec["inputs"], spec["outputs"], spec.get("fn_name")
    stop = spec.get("stop_on_first_failure", True)
    n = len(inputs)
    try:
        sys.set_int_max_str_digits(50000)
    except AttributeError:
        pass
    try:
        if fn_name:
            solution = compile_code(IMPORT_PRELUDE + "\n\n" + code, timeout)
            method = getattr(solution, fn_name)
            inputs = [[json.loads(line) for line in inp.split("\n")] for inp in inputs]
            outputs = [json.loads(o) for o in outputs] if compare else outputs
        else:
            solution = compile_code(make_function(clean_if_name(code)), timeout)
            method = solution.wrapped_function
    except BaseException as exc:  # noqa: BLE001
        status = "killed" if not isinstance(exc, Exception) else "runtime_error"
        for i in range(1 if stop else n):
            emit(i, status, 0.0, "compilation failed: " + _short(repr(exc)))
        return
    for i, (inp, want) in enumerate(zip(inputs, outputs)):
        saved = sys.stdout
        captured = Capturing()
        status, detail, raw = "passed", "", None
        start = time.perf_counter()
        faulthandler.enable()
        _alarm(timeout)
        try:
            if fn_name:
                sys.stdout = StringIO()  # the official grader does not capture; keep ours clean
                try:
                    got = method(*inp)
                except BaseException as exc:  # noqa: BLE001
                    if not isinstance(exc, Exception):
                        raise _ProcessEnded(repr(exc)) from None
                    raise
                _alarm(0)
                if isinstance(got, tuple):
                    got = list(got)
                if not compare:  # compared outside the sandbox; a value that JSON cannot
                    # carry exactly (custom objects, tuples inside, non-str keys) fails there
                    raw = json.dumps(got) if _plain_json(got) else None
                    if raw is None:
                        detail = "not a plain JSON value: " + _short(got)
                elif not (got == want):
                    status, detail = "wrong_answer", "got " + _short(got)
            else:
                with captured:
                    try:
                        call_method(method, inp)
                    except BaseException as exc:  # noqa: BLE001
                        if not isinstance(exc, Exception):
                            raise _ProcessEnded(repr(exc)) from None
                        raise
                    _alarm(0)
                text = captured[0]
                if not compare:
                    raw = text
                elif not stdio_equal(text, want):
                    status, detail = "wrong_answer", "got " + _short(text)
        except BaseException as exc:  # noqa: BLE001
            _alarm(0)
            status, detail = _error_status(exc), _short(repr(exc))
        finally:
            _alarm(0)
            faulthandler.disable()
            sys.stdout = saved
        emit(i, status, time.perf_counter() - start, detail, raw)
        if status == "killed":  # the official grading process is gone: no further test ran
            for j in range(i + 1, n if not stop else i + 1):
                emit(j, "killed", 0.0, "not run: the grading process ended")
            return
        if status != "passed" and stop:
            return


main()
