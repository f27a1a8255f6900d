"""The ``kwaiformers`` CLI fails cleanly: user errors are ONE ``error: ...`` line and exit 2 for
every command; ``--debug`` / ``KWAIFORMERS_DEBUG=1`` show the traceback; other failures (device
failures) keep their own exit code; Trainer log dicts stay out of the progress bars."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from kwaiformers.cli import COMMANDS, USAGE_EXIT, _ArgumentParser, main

ROOT = Path(__file__).resolve().parent.parent
ALL = sorted(COMMANDS)
CONFIG_COMMANDS = sorted(n for n in COMMANDS if n.startswith("train "))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def _parser(name: str) -> _ArgumentParser:
    parser = _ArgumentParser(prog=f"kwaiformers {name}")
    importlib.import_module(COMMANDS[name].module).add_arguments(parser)
    return parser


def _required_args(parser) -> list[str]:
    out: list[str] = []
    for a in parser._actions:
        if a.required and a.option_strings:
            out += [a.option_strings[0], "x"]
    for g in parser._mutually_exclusive_groups:
        if g.required:
            out += [g._group_actions[0].option_strings[0], "x"]
    return out


@pytest.mark.parametrize("name", ALL)
def test_bad_command_line_is_one_error_line(name, capsys):
    parser = _parser(name)
    assert main([*name.split(), *_required_args(parser), "--no-such-option"]) == USAGE_EXIT
    err = _one_error_line(capsys)
    assert f"kwaiformers {name}: unrecognized arguments: --no-such-option" in err
    assert f"see kwaiformers {name} --help" in err
    # an invalid option value names the option and the expected form
    for a in parser._actions:
        if a.option_strings and (a.type in (int, float) or a.choices):
            bad = "not-a-number" if a.type in (int, float) else "no-such-choice"
            assert main([*name.split(), *_required_args(parser), a.option_strings[0], bad]) == 2
            err = _one_error_line(capsys)
            assert a.option_strings[0] in err and bad in err
            assert ("invalid int value" in err or "invalid float value" in err
                    or "invalid choice" in err and "choose from" in err), err
            break
    if any(a.required for a in parser._actions):  # missing required option
        assert main(name.split()) == USAGE_EXIT
        assert "the following arguments are required" in _one_error_line(capsys)


#: one invalid value per config command, with the words the message must contain
INVALID_VALUE = {
    "train etree": ("leaf_rounds: -1\n", "leaf_rounds must be a positive int"),
    "train gppo": ("model: {}\ndataset: {}\n", "section 'training' is required"),
    "train sft": ("model: {}\ndataset: {}\n", "section 'training' is required"),
    "train keye-sft": ("model: {}\n", "model needs exactly one of 'name_or_path' or 'tiny'"),
    "train onerec": ("model: {type: bogus}\n", "model.type must be one of"),
    "train onerec-rl": ("algorithm: bogus\n", "algorithm must be one of gbpo, ecpo, hybrid"),
}


@pytest.mark.parametrize("name", CONFIG_COMMANDS)
def test_config_file_errors_are_one_error_line(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command that wrongly starts working writes here only
    files = {
        "bad.yaml": ("a: [1, 2\n", "invalid YAML in bad.yaml line 2"),
        "list.yaml": ("- 1\n- 2\n", "mapping"),
        "unknown.yaml": ("bogus_key: 1\n", "bogus_key"),
    }
    if name in INVALID_VALUE:  # a new recipe: add one invalid value of its config above
        files["value.yaml"] = INVALID_VALUE[name]
    for fname, (text, _) in files.items():
        (tmp_path / fname).write_text(text)
    assert main([*name.split(), "--config", "missing.yaml"]) == USAGE_EXIT
    err = _one_error_line(capsys)
    assert "'missing.yaml'" in err and ("No such file" in err or "does not exist" in err)
    for fname, (_, needle) in files.items():
        assert main([*name.split(), "--config", fname]) == USAGE_EXIT, fname
        err = _one_error_line(capsys)
        assert needle in err, (fname, err)


def _fake_command(monkeypatch, run) -> str:
    mod = types.ModuleType("kwaiformers_fake_command")
    mod.add_arguments = lambda parser: parser.add_argument("--x", type=int, default=0)
    mod.run = run
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    from kwaiformers import cli

    monkeypatch.setitem(cli.COMMANDS, "fake", cli.Command(mod.__name__, "test"))
    return "fake"


def test_debug_flag_and_env_show_the_traceback(monkeypatch, capsys):
    def run(args):
        raise ValueError("lr must be > 0,\n  got -1")

    name = _fake_command(monkeypatch, run)
    monkeypatch.delenv("KWAIFORMERS_DEBUG", raising=False)
    assert main([name]) == USAGE_EXIT
    assert _one_error_line(capsys) == "error: lr must be > 0, got -1"
    with pytest.raises(ValueError, match="lr must be > 0"):
        main([name, "--debug"])
    with pytest.raises(ValueError, match="lr must be > 0"):
        main(["--debug", name])
    monkeypatch.setenv("KWAIFORMERS_DEBUG", "1")
    with pytest.raises(ValueError, match="lr must be > 0"):
        main([name])
    monkeypatch.setenv("KWAIFORMERS_DEBUG", "0")
    assert main([name]) == USAGE_EXIT
    capsys.readouterr()


def test_device_failures_keep_their_exit_code_and_message(monkeypatch, capsys):
    from kwaiformers.federated.averagers import DeviceFailure

    def fail(args):
        raise DeviceFailure("rank 1: aggregation at level 0 failed at step 3")

    name = _fake_command(monkeypatch, fail)
    with pytest.raises(DeviceFailure, match="level 0 failed"):  # not turned into exit 2
        main([name])
    name = _fake_command(monkeypatch, lambda args: 3)  # a command's own code passes through
    assert main([name]) == 3
    name = _fake_command(monkeypatch, lambda args: args.x)
    assert main([name, "--x", "0"]) == 0
    assert capsys.readouterr().err == ""


def test_console_script_and_recipe_wrapper_exit_2_without_traceback(tmp_path):
    cmds = [[sys.executable, "-m", "kwaiformers.cli", "train", "etree", "--config", "nope.yaml"],
            [sys.executable, str(ROOT / "trainers" / "etree.py"), "--config", "nope.yaml"]]
    for cmd in cmds:
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                             env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
        assert res.returncode == 2, res.stderr
        assert res.stderr == "error: cannot open 'nope.yaml': No such file or directory\n"


def test_trainer_log_dicts_go_to_file_and_logging_not_between_bars(tmp_path, caplog):
    from transformers.trainer_callback import ProgressCallback

    from kwaiformers.utils.train_logging import (
        LOG_FILE_NAME,
        LOGGER_NAME,
        _PostImportPatcher,
        clean_on_log,
        install_clean_trainer_logs,
    )

    install_clean_trainer_logs()
    assert ProgressCallback.on_log is clean_on_log

    class Bar:
        def __init__(self):
            self.written, self.postfix = [], None

        def write(self, text):
            self.written.append(text)

        def set_postfix(self, post, refresh=True):
            self.postfix = post

    cb = ProgressCallback()
    cb.training_bar = Bar()
    args = types.SimpleNamespace(output_dir=str(tmp_path))
    state = types.SimpleNamespace(is_world_process_zero=True, global_step=5)
    with caplog.at_level("INFO", logger=LOGGER_NAME):
        cb.on_log(args, state, None, logs={"loss": 0.25, "learning_rate": 1e-3})
    assert cb.training_bar.written == []  # nothing printed between the bars
    assert cb.training_bar.postfix == {"loss": "0.25"}
    line = json.loads((tmp_path / LOG_FILE_NAME).read_text())
    assert line == {"step": 5, "loss": 0.25, "learning_rate": 1e-3}
    assert "'loss': 0.25" in caplog.text
    # the post-import hook patches a fresh import of transformers.trainer_callback
    import transformers

    spec = _PostImportPatcher().find_spec("transformers.trainer_callback", transformers.__path__)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    assert fresh.ProgressCallback.on_log is clean_on_log
