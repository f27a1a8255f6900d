"""Foundation: package import, CLI, lazy registration, offline test kit and the network guard."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest
from network_guard import NetworkAccessError, is_allowed_address
from utils import (
    assert_state_dicts_equal,
    make_tiny_qwen3,
    make_tiny_tokenizer,
    save_and_reload,
)


def test_import_is_cheap_and_lazy():
    code = (
        "import sys, kwaiformers; "
        "print(json.dumps([m for m in ('torch', 'transformers', 'trl') if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True,
        timeout=300,
    )
    assert json.loads(out.stdout) == []


def test_lazy_public_names():
    import kwaiformers

    assert "collect_env" in dir(kwaiformers)
    info = kwaiformers.collect_env()
    assert info["packages"]["transformers"].startswith("5.23")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kwaiformers.nope  # noqa: B018


def test_cli_help_and_env(capsys):
    from kwaiformers.cli import main

    assert main(["--help"]) == 0
    assert "env" in capsys.readouterr().out
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"packages", "torch_threads", "cuda_available"} <= info.keys()
    assert main(["no-such-command"]) == 2
    assert main(["train", "--help"]) == 0


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "kwaiformers.cli", "env"], capture_output=True, text=True, check=True,
        timeout=300,
    )
    assert "transformers" in out.stdout and "torch threads" in out.stdout


def test_deferred_auto_registration_and_native_precedence(tmp_path):
    """Entries registered after ``import kwaiformers`` apply when transformers' Auto modules load;
    a model_type transformers already ships keeps transformers' class."""
    (tmp_path / "dummy_model.py").write_text(textwrap.dedent(
        """
        import torch
        from transformers import PreTrainedModel, PretrainedConfig

        class DummyConfig(PretrainedConfig):
            model_type = "kwf_dummy"

        class DummyModel(PreTrainedModel):
            config_class = DummyConfig
            def __init__(self, config):
                super().__init__(config)
                self.w = torch.nn.Linear(2, 2)
                self.post_init()
        """
    ))
    code = textwrap.dedent(
        """
        import sys, kwaiformers
        from kwaiformers._registration import AUTO_REGISTRATIONS, AutoRegistration
        assert "transformers.models.auto.modeling_auto" not in sys.modules
        AUTO_REGISTRATIONS.append(AutoRegistration(
            "kwf_dummy", "dummy_model:DummyConfig", {"AutoModel": "dummy_model:DummyModel"}))
        AUTO_REGISTRATIONS.append(AutoRegistration(
            "bert", "dummy_model:DummyConfig", {"AutoModel": "dummy_model:DummyModel"}))
        from transformers import AutoConfig, AutoModel
        model = AutoModel.from_config(AutoConfig.for_model("kwf_dummy"))
        print(type(model).__name__, type(AutoConfig.for_model("bert")).__name__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True,
        timeout=300,
    )
    assert out.stdout.split() == ["DummyModel", "BertConfig"]
    assert "keeping transformers' class" in out.stderr


def test_tiny_tokenizer_chat_template_and_think_tags():
    tok = make_tiny_tokenizer()
    ids = tok("12+3=15")["input_ids"]
    assert tok.decode(ids) == "12+3=15"
    think = tok.convert_tokens_to_ids("<think>")
    assert tok("<think>x</think>")["input_ids"][0] == think
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True,
        enable_thinking=False,
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_tiny_qwen3_generates_and_round_trips():
    tok = make_tiny_tokenizer()
    model = make_tiny_qwen3(tok)
    batch = tok(["1+1=", "22+3="], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 3)
    reloaded = save_and_reload(model)
    assert_state_dicts_equal(model, reloaded)
    tok2 = save_and_reload(tok)
    assert tok2("abc")["input_ids"] == tok("abc")["input_ids"]


@pytest.mark.parametrize(
    ("family", "address", "allowed"),
    [
        (socket.AF_INET, ("127.0.0.1", 80), True),
        (socket.AF_INET, ("127.5.4.3", 80), True),
        (socket.AF_INET6, ("::1", 80, 0, 0), True),
        (socket.AF_INET, ("localhost", 80), True),
        (socket.AF_INET, ("8.8.8.8", 53), False),
        (socket.AF_INET, ("10.0.0.1", 80), False),
        (socket.AF_INET, ("huggingface.co", 443), False),
        (socket.AF_INET6, ("2001:db8::1", 443, 0, 0), False),
    ],
)
def test_guard_address_policy(family, address, allowed):
    assert is_allowed_address(family, address) is allowed


def test_loopback_still_works():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=5)
    conn, _ = server.accept()
    client.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    for s in (client, conn, server):
        s.close()


def test_public_connection_fails_the_test_machinery(pytester):
    """An inner test that connects to a public address fails even if it swallows the error."""
    import os

    here = os.path.dirname(__file__)
    pytester.makeconftest(open(os.path.join(here, "conftest.py")).read().replace(
        "sys.path.insert(0, os.path.dirname(__file__))", f"sys.path.insert(0, {here!r})"
    ))
    pytester.makepyfile(
        test_inner=textwrap.dedent(
            """
            import socket

            def test_swallowed():
                s = socket.socket()
                try:
                    s.connect(("192.0.2.1", 443))  # TEST-NET-1, blocked before any packet
                except Exception:
                    pass
                finally:
                    s.close()

            def test_loopback_ok():
                srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
                c = socket.create_connection(srv.getsockname()); c.close(); srv.close()
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*non-loopback network access*192.0.2.1*"])


def test_guard_raises_clear_error(_no_network):
    s = socket.socket()
    try:
        with pytest.raises(NetworkAccessError, match="must not open network connections"):
            s.connect(("192.0.2.7", 80))
    finally:
        s.close()
    _no_network.blocked.clear()  # this test tripped the guard on purpose


@pytest.mark.parametrize(
    "prelude",
    [
        "",  # kwaiformers first, then TRL pulls in transformers' Auto modules mid-import
        "import trl",  # TRL (and transformers) first
        "import torch",  # a partial transformers import in between
        # a kwaiformers module that is not itself registered but is imported by one that is
        # (modeling_onerec imports modeling_moe) triggers the Auto modules mid-import
        "from kwaiformers.models.onerec.modeling_moe import OneRecMoE",
        "import transformers; from transformers import AutoModel",  # Auto loaded before us
    ],
)
def test_registration_survives_import_order(prelude):
    code = textwrap.dedent(
        f"""
        {prelude}
        import kwaiformers
        from trl import GRPOConfig
        from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText
        names = []
        for model_type, auto in (("onerec_v2", AutoModel), ("onerec", AutoModel),
                                 ("KeyeVL1_5", AutoModelForImageTextToText)):
            config = AutoConfig.for_model(model_type)
            names.append(auto._model_mapping[type(config)].__name__)
        print(" ".join(names))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        "OneRecV2ForGenerativeRecommendation",
        "OneRecForGenerativeRecommendation",
        "KeyeVL1_5ForConditionalGeneration",
    ]
    assert "registration failed" not in out.stderr and "could not register" not in out.stderr
