"""The ``kwaiformers`` console script (subcommand style: ``kwaiformers <command> --help``).

Commands are registered in :data:`COMMANDS` by name (``"env"``, ``"train gppo"``,
``"eval aime"``, ...). Each points to a module exposing ``add_arguments(parser)`` and
``run(args) -> int``; the module is imported only when its command runs, so
``kwaiformers --help`` stays fast.

Errors (one place for every command, :func:`main`):

- **User errors** -- a bad command line (argparse), a missing or unreadable file
  (``FileNotFoundError``, ``IsADirectoryError``, ``NotADirectoryError``, ``PermissionError``), a
  malformed YAML/JSON config, an unknown key or an invalid value (``ValueError``, ``TypeError``:
  the project's convention is that these name the field and the expected form) -- print ONE line
  ``error: <message>`` on stderr and exit with :data:`USAGE_EXIT` (2), without a traceback.
  ``--debug`` (anywhere on the command line) or ``KWAIFORMERS_DEBUG=1`` re-raises instead, with the
  full traceback.
- Anything else (device failures such as ``DeviceFailure``, out-of-memory, a crashed rank) is not
  touched: it keeps its own exit code and message (e.g. ``kwaiformers train etree`` exits 3 with
  "resume from the last checkpoint").
- ``Trainer`` log dicts are kept out of the progress bars
  (:func:`kwaiformers.utils.train_logging.install_clean_trainer_logs`): they go to
  ``<output_dir>/trainer_log.jsonl`` and the ``kwaiformers.train`` logger.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

#: Exit code of a user error (bad command line, config file, key or value), as argparse uses.
USAGE_EXIT = 2
#: Environment variable that, like ``--debug``, shows the traceback of a user error.
DEBUG_ENV = "KWAIFORMERS_DEBUG"


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
    lines += ["", "Run 'kwaiformers <command> --help' for a command's options.",
              f"User errors print one 'error: ...' line and exit {USAGE_EXIT}; add --debug (or set "
              f"{DEBUG_ENV}=1) for the traceback."]
    return "\n".join(lines)


def _group_help(group: str) -> str:
    members = sorted(n for n in COMMANDS if n.startswith(group + " "))
    lines = [f"usage: kwaiformers {group} <name> [options]", "", GROUPS[group], ""]
    if not members:
        lines.append("no commands registered in this group yet")
    for name in members:
        lines.append(f"  {name.split(' ', 1)[1]:<16}{COMMANDS[name].help}")
    return "\n".join(lines)


class UsageError(Exception):
    """A command-line error found by argparse (printed as one ``error:`` line, exit 2)."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [
        UsageError, ValueError, TypeError, FileNotFoundError, IsADirectoryError,
        NotADirectoryError, PermissionError]
    if "yaml" in sys.modules:  # yaml errors can only come from a module that imported yaml
        types.append(sys.modules["yaml"].YAMLError)
    return tuple(types)


def format_user_error(exc: BaseException) -> str:
    """The one-line ``error: ...`` message for a user error."""
    yaml = sys.modules.get("yaml")
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        msg = f"cannot open {os.fsdecode(exc.filename)!r}: {exc.strerror}"
    elif yaml is not None and isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.name} line {mark.line + 1}" if mark is not None else "the config"
        problem = getattr(exc, "problem", None) or str(exc)
        msg = f"invalid YAML in {where}: {problem} (expected a YAML mapping of config keys)"
    else:
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, KeyError):  # pragma: no cover - not a user-error type today
            msg = f"missing key {msg}"
    return "error: " + " ".join(msg.split())


def _debug_requested(args: list[str]) -> bool:
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return "--debug" in args or env not in ("", "0", "false", "no")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Returns the process exit code (user errors: :data:`USAGE_EXIT`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    args = [a for a in args if a != "--debug"]
    try:
        return _dispatch(args)
    except _user_error_types() as exc:
        if debug:
            raise
        print(format_user_error(exc), file=sys.stderr)
        return USAGE_EXIT


def _dispatch(args: list[str]) -> int:
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
        raise UsageError(f"unknown command {name!r}; 'kwaiformers --help' lists the commands")
    from kwaiformers.utils.train_logging import install_clean_trainer_logs

    install_clean_trainer_logs()
    module = importlib.import_module(command.module)
    parser = _ArgumentParser(prog=f"kwaiformers {name}", description=command.help)
    module.add_arguments(parser)
    parsed = parser.parse_args(rest)
    return int(module.run(parsed) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
