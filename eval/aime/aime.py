"""AIME avg@k / pass@k as an `evaluate` metric (a thin wrapper over kwaiformers.evaluation.aime)."""

import datasets
import evaluate

from kwaiformers.evaluation.aime import score_aime

_CITATION = """\
@article{su2025klear,
  title={Klear-Reasoner: Advancing Reasoning Capability via Gradient-Preserving Clipping Policy Optimization},
  author={Su, Zhenpeng and others},
  journal={arXiv preprint arXiv:2508.07629},
  year={2025}
}
@article{chen2021codex,
  title={Evaluating Large Language Models Trained on Code},
  author={Chen, Mark and others},
  journal={arXiv preprint arXiv:2107.03374},
  year={2021}
}
"""

_DESCRIPTION = """\
AIME 2024 / 2025 accuracy for reasoning models. Each problem gets k sampled responses; every response
is scored with math-verify on the text after the last `</think>` (gold first); a response without
`</think>` (truncated reasoning) counts as wrong. Reports avg@k (mean per-sample accuracy, the papers'
"pass@1 averaged over k samples"), the unbiased pass@k estimator, the spread of the k runs and the
extraction-failure rate. All values are fractions in [0, 1] (`evaluate`'s convention; x100 for the
leaderboard percentages).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): the k full responses for each problem (same k for all).
    references (`list` of `str`): the gold answer of each problem (e.g. "204").
    k (`int` or `list` of `int`, default 1): the k values of pass@k (each <= number of responses).
    finish_reasons (`list` of `list` of `str`, optional): "length" marks a truncated response
        (counted wrong).
    require_think_end (`bool`, default True): False for non-reasoning models (parse everything).
    return_details (`bool`, default False): add per-problem records.
Returns:
    avg@<n>: mean accuracy over all responses (n = responses per problem).
    pass@<k>: unbiased pass@k for each requested k.
    std@<n>: standard deviation of the accuracy of the n sample runs.
    extraction_failure_rate: fraction of responses with no comparable answer.
    truncated_rate: fraction of responses marked as truncated.
Examples:
    >>> aime = evaluate.load("eval/aime")
    >>> r = aime.compute(predictions=[["<think>...</think> \\\\boxed{204}", "<think>...</think> 7"]],
    ...                  references=["204"], k=[1, 2])
    >>> r["avg@2"], r["pass@2"]
    (0.5, 1.0)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Aime(evaluate.Metric):
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
            homepage="https://huggingface.co/datasets/HuggingFaceH4/aime_2024",
            codebase_urls=["https://github.com/huggingface/Math-Verify"],
            reference_urls=["https://arxiv.org/abs/2508.07629"],
            license="apache-2.0",
        )

    def _compute(self, predictions, references, k=1, finish_reasons=None, require_think_end=True,
                 return_details=False):
        k_values = [k] if isinstance(k, int) else list(k)
        metrics, per_problem = score_aime(
            predictions, references, k_values, finish_reasons=finish_reasons,
            require_think_end=require_think_end)
        if return_details:
            metrics["details"] = per_problem
        return metrics
