"""The ``kwaiformers`` console script (subcommand style: ``kwaiformers <command> --help``).

Commands are registered in :data:`COMMANDS` by name (``"env"``, ``"train gppo"``,
``"eval aime"``, ...). Each points to a module exposing ``add_arguments(parser)`` and
``run(args) -> int``; the module is imported only when its command runs, so
``kwaiformers --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A CLI command: the module implementing it and a one-line help text."""

    module: str
    help: str


#: name -> command. Names with a space are sub-commands of a group (``train``, ``eval``).
COMMANDS: dict[str, Command] = {
    "train keye-sft": Command("kwaiformers.trainers.keye_sft_recipe", "Keye-VL image/video SFT, five cold-start modes (TRL)"),
    "env": Command("kwaiformers.utils.env", "print versions of the HF stack, threads and GPUs"),
    "simulate": Command("kwaiformers.data.cli_simulate", "write simulated KuaiRand-format logs (user simulator)"),
    "semantic-ids": Command("kwaiformers.data.cli_semantic_ids", "fit a semantic-ID tokenizer + item index on a dataset"),
    "train gppo": Command("kwaiformers.trainers.gppo_recipe", "GPPO RL (Klear-Reasoner) from a YAML recipe"),
    "train sft": Command("kwaiformers.trainers.sft_recipe", "long chain-of-thought SFT (TRL SFTTrainer)"),
    "eval aime": Command("kwaiformers.evaluation.aime", "AIME 2024/2025 avg@k and pass@k (math-verify)"),
    "eval livecodebench": Command("kwaiformers.evaluation.livecodebench", "LiveCodeBench pass@1/pass@k, v5/v6 windows (sandboxed)"),
    "eval kc-mmbench": Command("kwaiformers.evaluation.kc_mmbench", "KC-MMBench (Keye-VL) runner"),
    "eval mcq": Command("kwaiformers.evaluation.mm_mcq", "image/video multiple-choice TSV/JSONL runner"),
    "train etree": Command("kwaiformers.federated.recipe", "E-Tree decentralised training + baselines"),
    "train onerec": Command("kwaiformers.trainers.onerec_pretrain", "OneRec-V1 / OneRec-V2 pretraining (NTP, Recall/NDCG eval)"),
    "train onerec-rl": Command("kwaiformers.trainers.onerec_rl_recipe", "OneRec alignment: ECPO / GBPO (DARS) / hybrid"),
    "quickstart": Command("kwaiformers.quickstart", "OneRec-V2 + GBPO end to end on the simulator (offline, CPU)"),
}

GROUPS: dict[str, str] = {
    "train": "run a training recipe (kwaiformers train <recipe> --config FILE)",
    "eval": "run a benchmark runner (kwaiformers eval <benchmark> --model ID)",
}


def _top_level_help() -> str:
    from kwaiformers import __version__

    lines = [
        f"usage: kwaiformers <command> [options]   (kwaiformers {__version__})",
        "",
        "commands:",
    ]
    names = sorted(COMMANDS)
    width = max(len(n) for n in [*names, *GROUPS]) + 2
    for name in names:
        lines.append(f"  {name:<{width}}{COMMANDS[name].help}")
    for group, text in GROUPS.items():
        if not any(n.startswith(group + " ") for n in COMMANDS):
            lines.append(f"  {group:<{width}}{text} (no recipes registered yet)")
    lines += ["", "Run 'kwaiformers <command> --help' for a command's options."]
    return "\n".join(lines)


def _group_help(group: str) -> str:
    members = sorted(n for n in COMMANDS if n.startswith(group + " "))
    lines = [f"usage: kwaiformers {group} <name> [options]", "", GROUPS[group], ""]
    if not members:
        lines.append("no commands registered in this group yet")
    for name in members:
        lines.append(f"  {name.split(' ', 1)[1]:<16}{COMMANDS[name].help}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_top_level_help())
        return 0
    if args[0] in {"-V", "--version"}:
        from kwaiformers import __version__

        print(__version__)
        return 0
    name, rest = args[0], args[1:]
    if name in GROUPS:
        if not rest or rest[0] in {"-h", "--help"}:
            print(_group_help(name))
            return 0
        name, rest = f"{name} {rest[0]}", rest[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"kwaiformers: unknown command {name!r}\n\n{_top_level_help()}", file=sys.stderr)
        return 2
    module = importlib.import_module(command.module)
    parser = argparse.ArgumentParser(prog=f"kwaiformers {name}", description=command.help)
    module.add_arguments(parser)
    parsed = parser.parse_args(rest)
    return int(module.run(parsed) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
