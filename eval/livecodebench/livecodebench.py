"""LiveCodeBench pass@1 / pass@k as an `evaluate` metric (a thin wrapper over
kwaiformers.evaluation.livecodebench; programs run only inside kwaiformers.sandbox)."""

import datasets
import evaluate

from kwaiformers.evaluation.livecodebench import score_livecodebench
from kwaiformers.sandbox import Sandbox, SandboxConfig

_CITATION = """\
@article{jain2024livecodebench,
  title={LiveCodeBench: Holistic and Contamination Free Evaluation of Large Language Models for Code},
  author={Jain, Naman and others},
  journal={arXiv preprint arXiv:2403.07974},
  year={2024}
}
"""

_DESCRIPTION = """\
LiveCodeBench code generation. For every problem, k model responses are given; the last fenced code
block after the last `</think>` is extracted and graded with the official semantics (call-based
`Solution().<fn_name>(*json_args)` with tuple->list, or stdin/stdout compared line-wise after strip
with a Decimal token fallback; 6 s per test; the first failure stops; a sample is correct iff all
tests pass). Returns pass@1 (= avg@k) and unbiased pass@k, overall, per difficulty and per platform.

WARNING: this metric executes model-generated code. It runs it in the kwaiformers sandbox
(bubblewrap: pid/net/ipc/uts/mount namespaces, a private tmpfs per job, read-only interpreter,
unprivileged uid, rlimits, per-job memory cgroup) and refuses to run unless you opt in with
KWAIFORMERS_ALLOW_CODE_EXECUTION=1 or `allow_code_execution=True`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): the k full responses for each problem.
    references (`list` of `str`): for each problem a JSON string with `inputs`, `outputs` (lists of
        strings, public then private tests) and `fn_name` (null for stdin problems), optionally
        `question_id`, `difficulty`, `platform`; or a raw `code_generation_lite` row as JSON
        (`public_test_cases`, `private_test_cases` in either encoding, `metadata`, ...).
    k (`int` or `list` of `int`, default 1): the k values of pass@k.
    timeout (`float`, default 6.0): seconds per test.
    require_think_end (`bool`, default True): False for non-reasoning models.
    extract (`bool`, default True): False when predictions already are bare programs.
    allow_code_execution (`bool`, optional): opt in to running code (else the environment variable).
    return_details (`bool`, default False): add per-problem verdicts.
Returns:
    pass@<k>: unbiased pass@k as a fraction in [0, 1] (pass@1 = avg@k; like `code_eval`), plus
    `pass@<k>/<difficulty>` and `pass@<k>/<platform>`, `num_problems/<group>` (counts),
    `no_code_rate`, `truncated_rate` (fractions).
Examples:
    >>> import os; os.environ["KWAIFORMERS_ALLOW_CODE_EXECUTION"] = "1"
    >>> lcb = evaluate.load("eval/livecodebench")
    >>> ref = '{"inputs": ["1 2\\\\n"], "outputs": ["3\\\\n"], "fn_name": null}'
    >>> good = "<think>add</think>```python\\\\nprint(sum(map(int, input().split())))\\\\n```"
    >>> lcb.compute(predictions=[[good]], references=[ref])["pass@1"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Livecodebench(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Value("string"),
                }
            ),
            homepage="https://livecodebench.github.io/",
            codebase_urls=["https://github.com/LiveCodeBench/LiveCodeBench"],
            reference_urls=["https://arxiv.org/abs/2403.07974"],
            license="apache-2.0",
        )

    def _compute(self, predictions, references, k=1, timeout=6.0, require_think_end=True,
                 extract=True, allow_code_execution=None, return_details=False):
        sandbox = Sandbox(SandboxConfig(allow_code_execution=allow_code_execution))
        k_values = [k] if isinstance(k, int) else list(k)
        metrics, per_problem = score_livecodebench(
            predictions, references, k_values, require_think_end=require_think_end,
            extract=extract, timeout=timeout, sandbox=sandbox)
        if return_details:
            metrics["details"] = per_problem
        return metrics
