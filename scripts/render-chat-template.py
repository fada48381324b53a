#!/usr/bin/env python3
"""Reference chat-template renderer for MeshChat's parity tests.

Renders Hugging Face chat templates the way transformers 5.x `apply_chat_template(..., tokenize=False)` does
(src/transformers/utils/chat_template_utils.py and tokenization_utils_base.py), using only jinja2 and the
standard library:
- an ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols extension and an
  extension for `{% generation %}` blocks (transformers' AssistantTracker, which renders the block body as is);
- filter `tojson` = json.dumps(ensure_ascii=False, indent, separators, sort_keys);
- globals `raise_exception` (raises TemplateError), `strftime_now`, `dict` and `namespace` (which refuses
  underscore-prefixed attribute names);
- messages: keys whose value is null are dropped, and reasoning given as `reasoning_content`, `thinking` or
  `reasoning` is exposed under both `thinking` and `reasoning_content`;
- render variables: messages, tools (None when absent), documents=None, add_generation_prompt, then bos_token and
  eos_token only when not null, then any extra variables (which override the special tokens).

stdin:  a JSON list of cases {"template", "messages", "tools"?, "add_generation_prompt", "bos_token",
        "eos_token", "extra"?, "now"?}; "now" ("YYYY-MM-DDTHH:MM:SS", local time) fixes the clock that
        strftime_now reads, so that renders are reproducible.
stdout: a JSON list with {"ok": text} or {"error": "ExceptionType: message"} for each case.
"""

import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


class GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: a call block whose body renders unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


class TemplateDict:
    """`dict(...)` without exposing the dict type itself."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class TemplateNamespace(jinja2.utils.Namespace):
    """jinja2's namespace, refusing attribute names that start with an underscore."""

    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attributes = dict(*args, **kwargs)
        for name in attributes:
            TemplateNamespace.check(name)
        jinja2.utils.Namespace.__init__(self, attributes)

    def __setitem__(self, name, value):
        TemplateNamespace.check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"underscore-prefixed namespace attribute {name!r}")


class Clock:
    fixed = None

    @classmethod
    def now(cls):
        return cls.fixed if cls.fixed is not None else datetime.now()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return Clock.now().strftime(format)


def make_environment():
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    environment.globals["dict"] = TemplateDict()
    environment.globals["namespace"] = TemplateNamespace
    return environment


def normalize(messages):
    if not messages:
        raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
    result = []
    for message in messages:
        if not isinstance(message, dict):
            raise TypeError(f"Chat messages should be dicts, but got {message!r}.")
        message = {key: value for key, value in message.items() if value is not None}
        reasoning = next((message[key] for key in REASONING_KEYS if message.get(key) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        result.append(message)
    return result


def render(environment, templates, case):
    source = case["template"]
    if source not in templates:
        templates[source] = environment.from_string(source)
    tools = case.get("tools")
    if tools is not None and not all(isinstance(tool, dict) for tool in tools):
        raise ValueError("Tools should be JSON schemas (dicts).")
    variables = {}
    for name in ("bos_token", "eos_token"):
        if case.get(name) is not None:
            variables[name] = case[name]
    variables.update(case.get("extra") or {})
    Clock.fixed = datetime.fromisoformat(case["now"]) if case.get("now") else None
    return templates[source].render(
        messages=normalize(case["messages"]),
        tools=tools,
        documents=None,
        add_generation_prompt=case["add_generation_prompt"],
        **variables,
    )


def main():
    cases = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    environment = make_environment()
    templates = {}
    results = []
    for case in cases:
        try:
            results.append({"ok": render(environment, templates, case)})
        except Exception as error:  # every failure is a result: the test checks that both engines fail
            results.append({"error": f"{type(error).__name__}: {error}"})
    sys.stdout.buffer.write(json.dumps(results, ensure_ascii=False).encode("utf-8"))


if __name__ == "__main__":
    main()
