"""Generated (problem, program) corpus for differential tests of the LiveCodeBench grader.

Programs are built from templates that cross the axes on which graders diverge:

- input styles: ``input()``, ``sys.stdin.readline`` with and without ``strip``, ``read()``,
  ``readlines()``, iteration, ``from sys import stdin`` (``readline``/``read``/iteration), the
  prelude's global ``stdin``, ``sys.stdin.buffer``, ``open(0)``, ``input = sys.stdin.readline``
  and mixes of these;
- output styles: ``print``, ``sys.stdout.write``, ``print(*xs, sep=...)``, trailing spaces and
  newlines, floats, extra lines, ``end=''``;
- exits: ``exit()``, ``quit()``, ``sys.exit(0/1)``, ``raise SystemExit``, ``os._exit``,
  exceptions, ``KeyboardInterrupt``;
- call-based returns: tuples, nested lists and tuples, floats, ``None``, dicts, bools, custom
  objects (``__eq__``/``__ne__`` that lie, that raise), plus failure modes (exceptions, missing
  method, module-level loops, ``sys.exit`` inside the method, ``input()``);
- test inputs: fixed edge cases plus hypothesis-generated ones (derandomized, so the corpus is
  the same on every run).

:func:`build_corpus` returns ``[(name, input_output, code)]`` where ``input_output`` is the
LiveCodeBench ``{"inputs", "outputs", "fn_name"}`` mapping.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

# -- problems ---------------------------------------------------------------------------------------


def _pairs_input(pairs, sep=" ", final_newline=True, trailing=""):
    lines = [str(len(pairs))] + [f"{a}{sep}{b}{trailing}" for a, b in pairs]
    return "\n".join(lines) + ("\n" if final_newline else "")


def _pairs_output(pairs):
    return "".join(f"{a + b}\n" for a, b in pairs)


def _hypothesis_pair_inputs(n: int) -> list[str]:
    from hypothesis import Phase, given, settings
    from hypothesis import strategies as st

    found: list[str] = []
    ints = st.integers(-10**12, 10**12)

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate],
              deadline=None)
    @given(st.lists(st.tuples(ints, ints), min_size=1, max_size=5),
           st.sampled_from([" ", "  ", "\t"]), st.booleans(), st.sampled_from(["", " "]))
    def collect(pairs, sep, final_newline, trailing):
        found.append(_pairs_input(pairs, sep, final_newline, trailing))

    collect()
    unique = list(dict.fromkeys(found))
    return unique[:n]


def pairs_problem(n_hypothesis: int = 3) -> dict:
    """n, then n lines ``a b``: print ``a + b`` per line."""
    fixed = [[(1, 2), (3, 4)], [(10**18, 1), (-5, 5), (0, 0)]]
    inputs = [_pairs_input(p) for p in fixed] + _hypothesis_pair_inputs(n_hypothesis)
    outputs = []
    for text in inputs:
        lines = text.split("\n")
        n = int(lines[0])
        pairs = [tuple(map(int, line.split())) for line in lines[1:1 + n]]
        outputs.append(_pairs_output(pairs))
    return {"inputs": inputs, "outputs": outputs, "fn_name": None}


#: raw-line problem: print the length of every raw line including its newline, as
#: ``sys.stdin.readline`` returns it (the official StringIO keeps the newline)
RAW = {"inputs": ["ab\ncde\n", "x\n\nyz\n"], "outputs": ["3\n4\n", "2\n1\n3\n"], "fn_name": None}

# -- stdin readers: each defines rows = list of (a, b) -------------------------------------------------

READERS = {
    "input": "n = int(input())\nrows = [tuple(map(int, input().split())) for _ in range(n)]\n",
    "readline_strip": "import sys\nn = int(sys.stdin.readline().strip())\n"
                      "rows = [tuple(map(int, sys.stdin.readline().strip().split())) for _ in "
                      "range(n)]\n",
    "readline_raw": "import sys\nn = int(sys.stdin.readline())\n"
                    "rows = [tuple(map(int, sys.stdin.readline().split(' '))) for _ in range(n)]\n",
    "read_split": "import sys\ndata = sys.stdin.read().split()\nn = int(data[0])\n"
                  "rows = [(int(data[1 + 2 * i]), int(data[2 + 2 * i])) for i in range(n)]\n",
    "readlines": "import sys\nlines = sys.stdin.readlines()\nn = int(lines[0])\n"
                 "rows = [tuple(map(int, l.split())) for l in lines[1:1 + n]]\n",
    "iterate": "import sys\nit = iter(sys.stdin)\nn = int(next(it))\n"
               "rows = [tuple(map(int, next(it).split())) for _ in range(n)]\n",
    "for_loop": "import sys\nrows = []\nfirst = True\nfor line in sys.stdin:\n    if first:\n"
                "        first = False\n        continue\n    if line.strip():\n"
                "        rows.append(tuple(map(int, line.split())))\n",
    "from_sys_readline": "from sys import stdin\nn = int(stdin.readline())\n"
                         "rows = [tuple(map(int, stdin.readline().split())) for _ in range(n)]\n",
    "from_sys_read": "from sys import stdin\ndata = stdin.read().split()\n"
                     "rows = [(int(data[1 + 2 * i]), int(data[2 + 2 * i])) for i in "
                     "range(int(data[0]))]\n",
    "from_sys_iterate": "from sys import stdin\nrows = [tuple(map(int, l.split())) for l in stdin]"
                        "[1:]\n",
    "prelude_stdin": "n = int(stdin.readline())\n"
                     "rows = [tuple(map(int, stdin.readline().split())) for _ in range(n)]\n",
    "buffer": "import sys\ndata = sys.stdin.buffer.read().split()\n"
              "rows = [(int(data[1 + 2 * i]), int(data[2 + 2 * i])) for i in range(int(data[0]))]\n",
    "open0": "data = open(0).read().split()\n"
             "rows = [(int(data[1 + 2 * i]), int(data[2 + 2 * i])) for i in range(int(data[0]))]\n",
    "open0_lines": "lines = open(0).readlines()\n"
                   "rows = [tuple(map(int, l.split())) for l in lines[1:]]\n",
    "input_alias": "import sys\ninput = sys.stdin.readline\nn = int(input())\n"
                   "rows = [tuple(map(int, input().split())) for _ in range(n)]\n",
    "mix_input_read": "import sys\nn = int(input())\ndata = sys.stdin.read().split()\n"
                      "rows = [(int(data[2 * i]), int(data[2 * i + 1])) for i in range(n)]\n",
    "mix_input_iterate": "import sys\nn = int(input())\n"
                         "rows = [tuple(map(int, l.split())) for l in sys.stdin if l.strip()]\n",
    "mix_readline_readlines": "import sys\nn = int(sys.stdin.readline())\n"
                              "rows = [tuple(map(int, l.split())) for l in "
                              "sys.stdin.readlines()[:n]]\n",
    "main_guard": "def read():\n    n = int(input())\n"
                  "    return [tuple(map(int, input().split())) for _ in range(n)]\n",
}

# -- writers: each prints the sums of rows ---------------------------------------------------------

WRITERS = {
    "print": "for a, b in rows:\n    print(a + b)\n",
    "stdout_write": "import sys\nfor a, b in rows:\n    sys.stdout.write(str(a + b) + '\\n')\n",
    "sep_newline": "print(*[a + b for a, b in rows], sep='\\n')\n",
    "trailing_space": "for a, b in rows:\n    print(a + b, end=' \\n')\n",
    "extra_newlines": "print('\\n'.join(str(a + b) for a, b in rows) + '\\n\\n')\n",
    "float": "for a, b in rows:\n    print(float(a + b))\n",
    "float_format": "for a, b in rows:\n    print(f'{a + b:.2f}')\n",
    "extra_line": "for a, b in rows:\n    print(a + b)\nprint('done')\n",
    "end_empty": "for a, b in rows:\n    print(a + b, end='')\n",
    "one_line": "print(*[a + b for a, b in rows])\n",
    "leading_space": "for a, b in rows:\n    print(' ', a + b)\n",
}

EXITS = {
    "exit": "exit()\n",
    "quit": "quit()\n",
    "sys_exit0": "import sys\nsys.exit(0)\n",
    "sys_exit1": "import sys\nsys.exit(1)\n",
    "raise_systemexit": "raise SystemExit('bye')\n",
    "os_exit": "import os\nos._exit(0)\n",
    "raise_value_error": "raise ValueError('after output')\n",
    "keyboard_interrupt": "raise KeyboardInterrupt\n",
}

STDIN_FAILURES = {
    "wrong_sign": "n = int(input())\nfor _ in range(n):\n    a, b = map(int, input().split())\n"
                  "    print(a - b)\n",
    "index_error": "n = int(input())\nrows = [input() for _ in range(n)]\nprint(rows[n])\n",
    "recursion": "def f(k):\n    return f(k + 1)\nf(0)\n",
    "named_timeout": "class TimeoutException(Exception):\n    pass\nraise TimeoutException('mine')\n",
    "import_resource": "import resource\nprint(1)\n",
    "os_getcwd": "import os\nprint(os.getcwd())\n",
    "syntax": "print((1, 2)\n",
    "stdout_close": "import sys\nprint(3)\nsys.stdout.close()\n",
    "name_error": "print(undefined_name)\n",
    "stderr_only": "import sys\nn = int(input())\nfor _ in range(n):\n"
                   "    a, b = map(int, input().split())\n    print(a + b, file=sys.stderr)\n",
    "class_solution": "class Solution:\n    pass\nprint(3)\n",
    "eof": "while True:\n    input()\n",
    "subprocess": "import subprocess\nsubprocess.Popen(['true'])\n",
    "help_none": "help(len)\n",
    "swallow_and_print": "try:\n    undefined\nexcept Exception:\n    pass\n"
                         "n = int(input())\nfor _ in range(n):\n"
                         "    print(sum(map(int, input().split())))\n",
    "infinite_loop": "while True:\n    pass\n",
}

# -- call-based problems ----------------------------------------------------------------------------

CALL_PROBLEMS = {
    "pair": {"inputs": ["[1, 2, 3]\n4", "[5, 5]\n10", "[0]\n0"],
             "outputs": ["[0, 2]", "[0, 1]", "[0, 0]"], "fn_name": "findPair"},
    "average": {"inputs": ["[2, 4]", "[1, 2, 3, 6]"], "outputs": ["3.0", "3"], "fn_name": "average"},
    "nested": {"inputs": ["2", "3"], "outputs": ["[[0, 1], [1, 2]]", "[[0, 1], [1, 2], [2, 3]]"],
               "fn_name": "windows"},
}

_CALL_BODIES = {
    "findPair": {
        "tuple": "        for i in range(len(nums)):\n            for j in range(i, len(nums)):\n"
                 "                if nums[i] + nums[j] == target:\n                    return (i, j)\n",
        "list": "        for i in range(len(nums)):\n            for j in range(i, len(nums)):\n"
                "                if nums[i] + nums[j] == target:\n                    return [i, j]\n",
        "none": "        return None\n",
        "reversed": "        for i in range(len(nums)):\n            for j in range(i, len(nums)):\n"
                    "                if nums[i] + nums[j] == target:\n"
                    "                    return [j, i]\n",
        "string": "        return '[0, 2]'\n",
    },
    "average": {
        "float": "        return sum(nums) / len(nums)\n",
        "int_div": "        return sum(nums) // len(nums)\n",
        "round": "        return round(sum(nums) / len(nums), 1)\n",
        "bool": "        return True\n",
    },
    "windows": {
        "lists": "        return [[i, i + 1] for i in range(n)]\n",
        "tuples_inside": "        return [(i, i + 1) for i in range(n)]\n",
        "tuple_outside": "        return tuple([i, i + 1] for i in range(n))\n",
        "dict": "        return {'w': n}\n",
    },
}

_SIGNATURES = {"findPair": "nums, target", "average": "nums", "windows": "n"}

_LIARS = {
    "eq_true_ne_true": "class Liar:\n    def __eq__(self, other):\n        return True\n"
                       "    def __ne__(self, other):\n        return True\n",
    "eq_false_ne_false": "class Liar:\n    def __eq__(self, other):\n        return False\n"
                         "    def __ne__(self, other):\n        return False\n",
    "eq_raises": "class Liar:\n    def __eq__(self, other):\n        raise RuntimeError('no')\n",
    "eq_timeout_name": "class TimeoutException(Exception):\n    pass\n"
                       "class Liar:\n    def __eq__(self, other):\n"
                       "        raise TimeoutException('x')\n",
}

CALL_FAILURES = {
    "method_raises": "class Solution:\n    def findPair(self, nums, target):\n"
                     "        return nums[100]\n",
    "missing_method": "class Solution:\n    def other(self, nums, target):\n        return [0, 0]\n",
    "sys_exit_in_method": "import sys\nclass Solution:\n    def findPair(self, nums, target):\n"
                          "        sys.exit(0)\n",
    "exit_at_module_level": "exit()\nclass Solution:\n    def findPair(self, nums, target):\n"
                            "        return [0, 0]\n",
    "module_level_loop": "while True:\n    pass\nclass Solution:\n    pass\n",
    "method_loop": "class Solution:\n    def findPair(self, nums, target):\n"
                   "        while True:\n            pass\n",
    "input_in_method": "class Solution:\n    def findPair(self, nums, target):\n"
                       "        return list(map(int, input().split()))\n",
    "init_needs_args": "class Solution:\n    def __init__(self, x):\n        self.x = x\n"
                       "    def findPair(self, nums, target):\n        return [0, 2]\n",
    "no_class": "def findPair(nums, target):\n    return [0, 2]\n",
    "keyboard_interrupt": "class Solution:\n    def findPair(self, nums, target):\n"
                          "        raise KeyboardInterrupt\n",
    "prints_and_returns": "class Solution:\n    def findPair(self, nums, target):\n"
                          "        print('debug', nums)\n"
                          "        return [i for i in range(len(nums)) if nums[i] * 2 == target"
                          " or i == 0][:1] * 2 if target == 0 else self._slow(nums, target)\n"
                          "    def _slow(self, nums, target):\n"
                          "        for i in range(len(nums)):\n"
                          "            for j in range(i, len(nums)):\n"
                          "                if nums[i] + nums[j] == target:\n"
                          "                    return [i, j]\n",
    "syntax": "class Solution:\n    def findPair(self, nums, target)\n        return []\n",
    "import_resource": "import resource\nclass Solution:\n    def findPair(self, nums, target):\n"
                       "        return [0, 2]\n",
    "os_remove": "import os\nclass Solution:\n    def findPair(self, nums, target):\n"
                 "        os.remove('x')\n",
}

#: programs that hit the per-test alarm (each costs ``timeout`` seconds in both graders)
TIMEOUT_NAMES = ("stdin/failure/infinite_loop", "call/failure/module_level_loop",
                 "call/failure/method_loop")


def _stdin_program(reader: str, writer: str, tail: str = "") -> str:
    if reader == "main_guard":
        body = READERS[reader] + "\ndef main():\n    rows = read()\n" + "".join(
            "    " + line + "\n" for line in (WRITERS[writer] + tail).rstrip("\n").split("\n"))
        return body + "\nif __name__ == '__main__':\n    main()\n"
    return READERS[reader] + WRITERS[writer] + tail


def build_corpus(n_hypothesis: int = 3) -> list[tuple[str, dict, str]]:
    """The corpus: ``[(name, input_output, code)]`` (>= 300 programs)."""
    pairs = pairs_problem(n_hypothesis)
    corpus: list[tuple[str, dict, str]] = []
    for reader in READERS:
        for writer in WRITERS:
            corpus.append((f"stdin/{reader}/{writer}", pairs, _stdin_program(reader, writer)))
    for reader in ("input", "readline_strip", "read_split", "from_sys_readline", "for_loop",
                   "main_guard"):
        for name, tail in EXITS.items():
            corpus.append((f"stdin/{reader}/print+{name}", pairs,
                           _stdin_program(reader, "print", tail)))
    for name, code in STDIN_FAILURES.items():
        corpus.append((f"stdin/failure/{name}", pairs, code))
    raw_readers = {
        "readline": "import sys\nwhile True:\n    line = sys.stdin.readline()\n"
                    "    if not line:\n        break\n    if line.strip():\n"
                    "        print(len(line))\n",
        "from_sys_readline": "from sys import stdin\nwhile True:\n    line = stdin.readline()\n"
                             "    if not line:\n        break\n    if line.strip():\n"
                             "        print(len(line))\n",
        "iterate": "import sys\nfor line in sys.stdin:\n    if line.strip():\n"
                   "        print(len(line))\n",
        "readlines": "import sys\nfor line in sys.stdin.readlines():\n    if line.strip():\n"
                     "        print(len(line))\n",
        "input_plus_one": "while True:\n    try:\n        line = input()\n    except EOFError:\n"
                          "        break\n    if line:\n        print(len(line) + 1)\n",
        "read_splitlines": "import sys\nfor line in sys.stdin.read().splitlines():\n"
                           "    if line:\n        print(len(line) + 1)\n",
        "open0_iterate": "for line in open(0):\n    if line.strip():\n        print(len(line))\n",
        "prelude_stdin_read": "for line in stdin.read().split('\\n'):\n    if line:\n"
                              "        print(len(line) + 1)\n",
    }
    for name, code in raw_readers.items():
        corpus.append((f"raw/{name}", RAW, code))
        corpus.append((f"raw/{name}+exit", RAW, code + "exit()\n"))
    for problem_name, problem in CALL_PROBLEMS.items():
        fn = problem["fn_name"]
        for body_name, body in _CALL_BODIES[fn].items():
            code = f"class Solution:\n    def {fn}(self, {_SIGNATURES[fn]}):\n{body}"
            corpus.append((f"call/{problem_name}/{body_name}", problem, code))
            corpus.append((f"call/{problem_name}/{body_name}+typing", problem,
                           "from typing import List\n" + code))
        for liar_name, liar in _LIARS.items():
            code = liar + f"class Solution:\n    def {fn}(self, {_SIGNATURES[fn]}):\n" \
                          "        return Liar()\n"
            corpus.append((f"call/{problem_name}/liar_{liar_name}", problem, code))
    for name, code in CALL_FAILURES.items():
        corpus.append((f"call/failure/{name}", CALL_PROBLEMS["pair"], code))
    names = [c[0] for c in corpus]
    assert len(names) == len(set(names)), "duplicate corpus names"
    for name in TIMEOUT_NAMES:
        assert name in names, name
    return corpus


def official_category(results: list, metadata: dict | None = None) -> str:
    """First-failure category of an official result list (``True``, ``False``/-2, -1, -3, -4).

    When the grading process dies (the program ended it, or the global timeout), the official
    ``check_correctness`` fails on its empty metadata list and ``evaluate_generations`` reports
    ``[-2]`` with ``error_code`` -5 ("TestRunnerError"): that is the ``killed`` category."""
    if metadata is not None and metadata.get("error_code") == -5:
        return "killed"
    for r in results:
        if r is True:
            continue
        if r is False or r == -2 or not r:
            return "wrong_answer"
        return {-1: "killed", -3: "timeout", -4: "runtime_error", -5: "runtime_error"}.get(
            r, f"other:{r!r}")
    return "passed" if results else "runtime_error"


def ours_category(outcomes, n_tests: int) -> str:
    """First-failure category of a kwaiformers :func:`run_tests` outcome list."""
    if len(outcomes) == n_tests and all(o.passed for o in outcomes):
        return "passed"
    return outcomes[-1].status if outcomes else "runtime_error"


def official_first_failure(results: list) -> int | None:
    """Index of the first failing test (``None`` if all pass)."""
    for i, r in enumerate(results):
        if r is not True:
            return i
    return None


def dumps(problem: dict) -> str:
    return json.dumps(problem)


@contextlib.contextmanager
def official_grader_stdio():
    """Silence the official grader's per-sample tracebacks while keeping real file descriptors
    (it calls ``faulthandler.enable()``, which needs them)."""
    saved = sys.stdout, sys.stderr
    with open(os.devnull, "w") as sink:
        sys.stdout = sys.stderr = sink
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved
