"""LLM judges for benchmarks whose official protocol grades answers with a language model.

A judge is any object with ``name: str`` and ``generate(prompt: str, temperature: float = 0.0) -> str``
(:class:`Judge`). Two real implementations:

* :class:`OpenAICompatibleJudge`: ``POST {base_url}/chat/completions`` on any OpenAI-compatible
  server (OpenAI, vLLM ``serve``, SGLang, TGI, ...). The official KC-MMBench judge is
  ``gpt-4o-mini`` with ``max_tokens=128``.
* :class:`TransformersChatJudge`: any local transformers chat model (``AutoModelForCausalLM`` with a
  chat template).

:class:`CallableJudge` wraps a plain function. :func:`build_judge` parses the CLI spelling
(``openai:MODEL[@BASE_URL]`` or ``hf:PATH_OR_HUB_ID``).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

_THINK_RE = re.compile(r"<think>.*?</think>", flags=re.DOTALL)


@runtime_checkable
class Judge(Protocol):
    """What the scoring cores need from a judge."""

    name: str

    def generate(self, prompt: str, temperature: float = 0.0) -> str:
        """Reply to a single user ``prompt``."""
        ...


class CallableJudge:
    """Wrap ``fn(prompt, temperature) -> str`` (or ``fn(prompt) -> str``) as a :class:`Judge`."""

    def __init__(self, fn: Callable[..., str], name: str = "callable") -> None:
        if not callable(fn):
            raise TypeError("fn must be callable")
        self.fn = fn
        self.name = name

    def generate(self, prompt: str, temperature: float = 0.0) -> str:
        try:
            return self.fn(prompt, temperature)
        except TypeError:
            return self.fn(prompt)


class OpenAICompatibleJudge:
    """A chat-completions endpoint as a judge (stdlib HTTP client, no extra dependency).

    Args:
        model: the served model name (official KC-MMBench judge: ``gpt-4o-mini``).
        base_url: API root, e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000/v1``;
            defaults to ``$OPENAI_BASE_URL`` then the OpenAI API.
        api_key: defaults to ``$OPENAI_API_KEY`` (may be empty for local servers).
        max_tokens: completion budget (official: 128).
        timeout: seconds per request.
        system_prompt: optional system message (the official judge sends none).
    """

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 128,
        timeout: float = 60.0,
        system_prompt: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        self.model = model
        self.base_url = (
            base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        ).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.system_prompt = system_prompt
        self.name = f"openai:{model}"

    def generate(self, prompt: str, temperature: float = 0.0) -> str:
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages,
                "temperature": float(temperature),
                "max_tokens": self.max_tokens,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.base_url + "/chat/completions", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:300]
            raise RuntimeError(f"judge endpoint returned HTTP {err.code}: {detail}") from err
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise RuntimeError(f"unexpected chat-completions payload: {str(payload)[:300]}") from err
        return content or ""


class TransformersChatJudge:
    """A local transformers chat model as a judge.

    Args:
        model: a path / hub id, or an already loaded causal-LM.
        tokenizer: needed when ``model`` is an object; loaded from the path otherwise.
        max_new_tokens: completion budget (official judge: 128).
        chat_template_kwargs: forwarded to ``apply_chat_template`` (e.g. ``{"enable_thinking":
            False}`` for Qwen3 judges).
        strip_think: remove ``<think>...</think>`` from the reply (a reasoning judge may write the
            verdict words while thinking).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        max_new_tokens: int = 128,
        chat_template_kwargs: dict[str, Any] | None = None,
        strip_think: bool = True,
        torch_dtype: Any = "auto",
        device: str | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, (str, os.PathLike)):
            self.name = f"hf:{model}"
            tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
            if device is not None:
                model = model.to(device)
        else:
            if tokenizer is None:
                raise ValueError("tokenizer is required when model is a loaded object")
            self.name = f"hf:{getattr(getattr(model, 'config', None), '_name_or_path', '') or type(model).__name__}"
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the judge tokenizer has no chat_template; pass a chat model")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.strip_think = strip_think

    def generate(self, prompt: str, temperature: float = 0.0) -> str:
        import torch

        ids = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
            **self.chat_template_kwargs,
        )
        ids = {k: v.to(self.model.device) for k, v in ids.items()}
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**ids, pad_token_id=pad, **kwargs)
        text = self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        return _THINK_RE.sub("", text).strip() if self.strip_think else text


def build_judge(spec: str | None, **kwargs: Any) -> Judge | None:
    """Parse a judge spec: ``None``/``"none"``/``"rule"`` -> ``None``; ``openai:MODEL`` or
    ``openai:MODEL@BASE_URL`` -> :class:`OpenAICompatibleJudge`; ``hf:PATH_OR_ID`` ->
    :class:`TransformersChatJudge`. Extra ``kwargs`` go to the constructor."""
    if spec is None or spec in {"none", "rule", ""}:
        return None
    if not isinstance(spec, str):
        raise TypeError(f"judge spec must be a string, got {type(spec).__name__}")
    kind, _, rest = spec.partition(":")
    if kind == "openai" and rest:
        model, _, base_url = rest.partition("@")
        return OpenAICompatibleJudge(model=model, base_url=base_url or None, **kwargs)
    if kind == "hf" and rest:
        return TransformersChatJudge(rest, **kwargs)
    raise ValueError(
        f"judge spec {spec!r} not understood; expected 'openai:MODEL[@BASE_URL]', "
        "'hf:PATH_OR_HUB_ID' or 'none'"
    )
