"""KC-MMBench accuracy as an `evaluate` metric (a thin wrapper over kwaiformers.evaluation.kc_mmbench)."""

import datasets
import evaluate

from kwaiformers.evaluation.kc_mmbench import TASKS, score_kc_mmbench

_CITATION = """\
@article{kwaikeyeteam2025kwaikeyevl,
  title={Kwai Keye-VL Technical Report},
  author={Kwai Keye Team},
  journal={arXiv preprint arXiv:2507.01949},
  year={2025}
}
"""

_DESCRIPTION = """\
KC-MMBench (Kwai-Keye/KC-MMbench) scores short-video understanding on six tasks: CPV,
Hot_Videos_Aggregation, Collection_Order (VQA, graded by an LLM judge in the official protocol, or by
a deterministic rule mode that is NOT the paper's metric) and Pornographic_Comment, High_like, SPU
(yes/no, scored exactly like the official VLMEvalKit fork: think tags removed, case-sensitive 是/否
then yes/no token extraction, `Unknown` answers re-judged with the official prompt when a judge is
given, else counted wrong; exact-match and judged accuracies and the `Unknown` rate are reported).
Accuracies and rates are fractions in [0, 1] (`evaluate`'s convention; x100 for the official
tables' percentages).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): model responses.
    references (`list` of `str`): gold answers (`是`/`否` for the yes/no tasks).
    tasks (`list` of `str`): task name per sample (one of {tasks}, or a VLMEvalKit alias such as
        `Video_Topic`, `PornComment`).
    categories (`list` of `str`, optional): per-sample `category` for the breakdowns.
    questions (`list` of `str`, optional): the TSV `question` of each sample; needed when a judge
        re-judges `Unknown` yes/no answers.
    judge (optional): an object with `generate(prompt, temperature=0.0) -> str` and a `name`
        (see `kwaiformers.evaluation.judges`), used for the VQA tasks and the `Unknown` yes/no
        answers with the official prompts.
    yn_judge (`bool`, default True): re-judge `Unknown` yes/no answers when a judge is given.
    vqa_mode (`str`, optional): "judge", "rule" or None (judge when given, else rule).
    post_process (`bool`, default False): apply KeyeChat's answer post-processing first
        (analysis/think/answer/boxed); the official runner does this at generation time.
    judge_retries (`int`, default 5): tries per sample (temperature 0.5 * try).
    return_details (`bool`, default False): add per-sample details.
Returns:
    overall_accuracy: unweighted mean of the task accuracies (a fraction in [0, 1]).
    overall_micro_accuracy: accuracy over all samples (a fraction in [0, 1]).
    tasks: per task `accuracy`, `num_samples`, `num_correct`, `mode`, `categories`, and
        `exact_match_accuracy`/`unknown_rate` (+ `judged_accuracy`, `num_unknown_after_judge`
        with a judge) for yes/no, or `judge_failures`/`rule_agreement` (VQA, judge mode).
    modes: which mode produced each task's number.
Examples:
    >>> kc = evaluate.load("eval/kc_mmbench")
    >>> kc.compute(predictions=["是", "是。"], references=["是", "否"], tasks=["SPU", "SPU"])["overall_accuracy"]
    0.5
""".format(tasks=", ".join(TASKS))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KcMmbench(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "tasks": datasets.Value("string"),
                }
            ),
            homepage="https://huggingface.co/datasets/Kwai-Keye/KC-MMbench",
            codebase_urls=["https://github.com/Kwai-Keye/Keye"],
            reference_urls=["https://arxiv.org/abs/2507.01949"],
            license="cc-by-sa-4.0",
        )

    def _compute(
        self,
        predictions,
        references,
        tasks,
        categories=None,
        judge=None,
        vqa_mode=None,
        post_process=False,
        judge_retries=5,
        return_details=False,
        questions=None,
        yn_judge=True,
    ):
        return score_kc_mmbench(
            predictions,
            references,
            tasks,
            categories=categories,
            judge=judge,
            vqa_mode=vqa_mode,
            post_process=post_process,
            judge_retries=judge_retries,
            return_details=return_details,
            questions=questions,
            yn_judge=yn_judge,
        )
