"""Keye-VL chat conventions: thinking modes, the chat template, response parsing.

Thinking modes (Keye-VL README / report Sec. 4): the mode is chosen by a suffix on the last user
text — ``/think`` (the model answers ``<think>...</think><answer>...</answer>``), ``/no_think`` (plain
answer) or none (*auto-think*: ``<analysis>...</analysis>`` then either a direct answer or
``<think>...</think><answer>...</answer>``). ``<analysis>`` / ``<answer>`` are plain text, ``<think>``
is a special token. The processor's chat template takes ``thinking_mode="think"|"no_think"|"auto"``
and appends the suffix itself; :func:`add_thinking_suffix` does the same on message lists.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "KEYE_CHAT_TEMPLATE",
    "THINKING_MODES",
    "add_thinking_suffix",
    "build_keye_messages",
    "parse_keye_response",
]

THINKING_MODES = ("think", "no_think", "auto")
_SUFFIX = {"think": "/think", "no_think": "/no_think", "auto": ""}

#: Qwen2-VL-style template of the hub's ``chat_template.json`` (default system prompt, vision
#: placeholders, ``add_vision_id`` labels) plus the thinking-mode suffix on the last user text.
KEYE_CHAT_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1, image=0, video=0) -%}"
    "{%- for m in messages -%}{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- set suffix = '' -%}"
    "{%- if thinking_mode is defined and thinking_mode == 'think' -%}{%- set suffix = '/think' -%}"
    "{%- elif thinking_mode is defined and thinking_mode == 'no_think' -%}"
    "{%- set suffix = '/no_think' -%}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- set is_last_user = loop.index0 == ns.last_user -%}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}{%- if is_last_user -%}{{- suffix -}}{%- endif -%}"
    "{%- else -%}"
    "{%- set cs = namespace(last_text=-1) -%}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'text' -%}"
    "{%- set cs.last_text = loop.index0 -%}{%- endif -%}{%- endfor -%}"
    "{%- for c in message['content'] -%}"
    "{%- if c['type'] == 'image' or 'image' in c or 'image_url' in c -%}"
    "{%- set ns.image = ns.image + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' + ns.image|string + ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif c['type'] == 'video' or 'video' in c -%}"
    "{%- set ns.video = ns.video + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' + ns.video|string + ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif c['type'] == 'text' -%}"
    "{{- c['text'] -}}{%- if is_last_user and loop.index0 == cs.last_text -%}{{- suffix -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if is_last_user and cs.last_text < 0 -%}{{- suffix -}}{%- endif -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


def _check_mode(mode: str) -> str:
    if mode not in THINKING_MODES:
        raise ValueError(f"thinking_mode must be one of {THINKING_MODES}, got {mode!r}")
    return mode


def add_thinking_suffix(messages: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Copy of ``messages`` with ``/think`` / ``/no_think`` appended to the last user text."""
    suffix = _SUFFIX[_check_mode(mode)]
    out = [dict(m) for m in messages]
    users = [i for i, m in enumerate(out) if m.get("role") == "user"]
    if not users:
        raise ValueError("messages must contain a user turn")
    if not suffix:
        return out
    msg = out[users[-1]]
    content = msg["content"]
    if isinstance(content, str):
        msg["content"] = content + suffix
        return out
    content = [dict(c) for c in content]
    texts = [i for i, c in enumerate(content) if c.get("type") == "text"]
    if texts:
        content[texts[-1]]["text"] = content[texts[-1]]["text"] + suffix
    else:
        content.append({"type": "text", "text": suffix})
    msg["content"] = content
    return out


def build_keye_messages(
    question: str,
    images: int = 0,
    videos: int = 0,
    thinking_mode: str = "auto",
    system: str | None = None,
) -> list[dict[str, Any]]:
    """A single-turn user message: ``images`` image slots, ``videos`` video slots, then ``question``."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    if images < 0 or videos < 0:
        raise ValueError("images and videos must be >= 0")
    content: list[dict[str, Any]] = [{"type": "image"}] * images + [{"type": "video"}] * videos
    content = [dict(c) for c in content] + [{"type": "text", "text": question}]
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": content})
    return add_thinking_suffix(messages, thinking_mode)


_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")


def parse_keye_response(text: str, extract_boxed: bool = True) -> dict[str, str | None]:
    """Split a Keye response into ``analysis``, ``think`` and the final ``answer``.

    Follows ``KeyeChat.post_process_func``: split on ``</analysis>``, then on ``</think>``, take the
    last ``<answer>...</answer>`` if any, then the last ``\\boxed{...}`` (when ``extract_boxed``).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    analysis = think = None
    rest = text
    if "</analysis>" in rest:
        head, rest = rest.split("</analysis>", 1)
        analysis = head.split("<analysis>", 1)[-1].strip()
    if "</think>" in rest:
        head, rest = rest.rsplit("</think>", 1)
        think = head.split("<think>", 1)[-1].strip()
    answers = re.findall(r"<answer>(.*?)</answer>", rest, flags=re.DOTALL)
    answer = answers[-1] if answers else rest.replace("<answer>", "")
    answer = answer.strip()
    if extract_boxed:
        boxed = _BOXED.findall(answer)
        if boxed:
            answer = boxed[-1].strip()
    return {"analysis": analysis, "think": think, "answer": answer}
