"""`expertmesh chat-template` against jinja2 rendering as transformers does (scripts/render-chat-template.py).

Usage: python3 chat_template_cli_checks.py EXPERTMESH_BINARY
For real templates and conversations (with tools where the template takes them, and conversations the template
rejects), the command's stdout must equal jinja2's text byte for byte, or both must fail (the command with exit
status 1 and one `error:` line). Messages are first prepared as vLLM prepares OpenAI requests (text parts joined
unless the template reads them, tool-call arguments given as JSON strings parsed). Prints one line per case.
"""
import copy
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import tempfile

root = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reference", root / "scripts" / "render-chat-template.py")
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)
binary = sys.argv[1]
templates = root / "Tests" / "MeshChatTests" / "Templates"
conversations = root / "Tests" / "MeshChatTests" / "Conversations"
CASES = {
    "mixtral-8x7b-instruct-v0.1": ["system-multi-turn", "unicode", "jinja-lookalike", "multimodal-parts",
                                   "reject-consecutive-users"],
    "qwen3-0.6b": ["tool-calls", "tool-calls-string-arguments", "reasoning", "unicode", "empty-content"],
    "deepseek-v3": ["system-multi-turn", "tool-calls"],
    "glm-4.6": ["tool-calls", "multi-turn"],
    "llama-4-scout-17b-16e-instruct": ["multimodal-parts", "system-user"],
}
environment = reference.make_environment()


def prepare(messages, template):
    """vLLM's preparation of OpenAI messages before the template renders them."""
    reads_parts = re.search(r"for\s+\w+\s+in\s+\w+(\[\s*['\"]content['\"]\s*\]|\.content)", template)
    messages = copy.deepcopy(messages)
    for message in messages:
        if isinstance(message.get("content"), list) and not reads_parts:
            message["content"] = "\n".join(part["text"] for part in message["content"]
                                           if isinstance(part, dict) and isinstance(part.get("text"), str))
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                try:
                    parsed = json.loads(function["arguments"])
                except ValueError:
                    continue
                if isinstance(parsed, dict):
                    function["arguments"] = parsed
    return messages


failures = 0
with tempfile.TemporaryDirectory() as scratch:
    scratch = pathlib.Path(scratch)
    for name, conversation_names in CASES.items():
        template_path = templates / f"{name}.jinja"
        tokens = json.loads((templates / f"{name}.json").read_text())
        for conversation_name in conversation_names:
            conversation = json.loads((conversations / f"{conversation_name}.json").read_text())
            for generation_prompt in (True, False):
                source = template_path.read_text()
                case = {"template": source, "messages": prepare(conversation["messages"], source),
                        "add_generation_prompt": generation_prompt, "bos_token": tokens.get("bos_token"),
                        "eos_token": tokens.get("eos_token")}
                command = [binary, "chat-template", "--template", str(template_path)]
                (scratch / "messages.json").write_text(json.dumps(conversation["messages"], ensure_ascii=False))
                command += ["--messages", str(scratch / "messages.json")]
                if "tools" in conversation:
                    case["tools"] = conversation["tools"]
                    (scratch / "tools.json").write_text(json.dumps(conversation["tools"], ensure_ascii=False))
                    command += ["--tools", str(scratch / "tools.json")]
                if generation_prompt:
                    command.append("--add-generation-prompt")
                for flag, key in (("--bos", "bos_token"), ("--eos", "eos_token")):
                    if case[key] is not None:
                        command += [flag, case[key]]
                try:
                    expected = {"ok": reference.render(environment, {}, case)}
                except Exception as error:  # the template rejected the conversation
                    expected = {"error": f"{type(error).__name__}: {error}"}
                result = subprocess.run(command, capture_output=True)
                label = f"{name} × {conversation_name} (generation prompt {generation_prompt})"
                if "ok" in expected:
                    same = result.returncode == 0 and result.stdout.decode() == expected["ok"]
                    detail = f"\n--- jinja2\n{expected['ok']!r}\n--- expertmesh\n{result.stdout.decode()!r} {result.stderr}"
                else:
                    lines = result.stderr.decode().strip().splitlines()
                    same = result.returncode == 1 and not result.stdout and len(lines) == 1 and lines[0].startswith("error:")
                    detail = f"\njinja2 failed with {expected['error']}; expertmesh: {result.returncode} {result.stderr}"
                print(("ok " if same else "FAIL ") + label + ("" if same else detail), flush=True)
                failures += not same
print("all cases agree" if failures == 0 else f"{failures} case(s) differ")
sys.exit(1 if failures else 0)
