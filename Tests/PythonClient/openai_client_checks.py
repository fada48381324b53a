"""Checks ExpertMesh's OpenAI-compatible API with the official `openai` client.

Usage: python3 openai_client_checks.py BASE_URL MODEL [--api-key KEY] [--chat]
Prints one line per check; exits non-zero with the failing assertion on the first failure.
"""
import argparse
import importlib.util
import json
import pathlib
import sys

import urllib.error
import urllib.request

import openai

parser = argparse.ArgumentParser()
parser.add_argument("base_url")
parser.add_argument("model")
parser.add_argument("--api-key", default="none")
parser.add_argument("--chat", action="store_true", help="the server has a chat template")
parser.add_argument("--chat-template-file", help="the server's chat template: a chat must equal a completion of "
                    "jinja2's rendering (scripts/render-chat-template.py) of the same conversation")
parser.add_argument("--bos", help="the bos_token the server renders with")
parser.add_argument("--eos", help="the eos_token the server renders with")
args = parser.parse_args()

client = openai.OpenAI(base_url=args.base_url + "/v1", api_key=args.api_key, max_retries=0, timeout=120)
GREEDY = dict(temperature=0, extra_body={"ignore_eos": True})
PROMPT = "The quick brown fox jumps over"


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok {name}", flush=True)


def expect_error(name, error_type, call, status):
    try:
        call()
    except error_type as error:
        check(name, error.status_code == status, f"status {error.status_code}, body {error.body}")
        body = error.body if isinstance(error.body, dict) else {}
        check(name + " (OpenAI error shape)", {"message", "type", "param", "code"} <= set(body), f"{error.body}")
        return body
    check(name, False, f"no {error_type.__name__} raised")


models = client.models.list()
check("models.list", [m.id for m in models.data] == [args.model], f"{[m.id for m in models.data]}")

# Completions: greedy, streaming equal to non-streaming, usage and finish reasons.
whole = client.completions.create(model=args.model, prompt=PROMPT, max_tokens=16, **GREEDY)
text = whole.choices[0].text
check("completion", whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 16, f"{whole}")
chunks = list(client.completions.create(model=args.model, prompt=PROMPT, max_tokens=16, stream=True,
                                        stream_options={"include_usage": True}, **GREEDY))
streamed = "".join(c.choices[0].text for c in chunks if c.choices)
check("streamed completion equals whole", streamed == text, f"{streamed!r} vs {text!r}")
check("stream ends with finish_reason", [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length")
check("stream usage chunk", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16, f"{chunks[-1]}")

# Stop strings, matched across token boundaries on the text; the stop text is not returned. A seeded
# sample (reproducible, so the same tokens come again up to the stop) gives text with enough
# visible characters even from a random-weight model.
SEEDED = dict(temperature=1.0, max_tokens=24, extra_body={"ignore_eos": True})
seeded = {seed: client.completions.create(model=args.model, prompt=PROMPT, seed=seed, **SEEDED).choices[0].text
          for seed in range(1, 9)}
seed, text = max(seeded.items(), key=lambda item: len(item[1].strip()))
check("a seeded sample has text to stop in", len(text.strip()) >= 6, f"{seeded}")
start = len(text) // 2
stop = text[start:start + 3]
expected = text[:text.index(stop)]
stopped = client.completions.create(model=args.model, prompt=PROMPT, seed=seed, stop=[stop, "\u2603never"], **SEEDED)
check("stop string", stopped.choices[0].text == expected and stopped.choices[0].finish_reason == "stop",
      f"stop {stop!r} in {text!r}: {stopped.choices[0].text!r} vs {expected!r}")
check("stop ends generation early", stopped.usage.completion_tokens < 24, f"{stopped.usage}")
streamed_stop = "".join(c.choices[0].text for c in client.completions.create(
    model=args.model, prompt=PROMPT, seed=seed, stop=stop, stream=True, **SEEDED) if c.choices)
check("streamed stop string", streamed_stop == expected, f"{streamed_stop!r} vs {expected!r}")

# Logprobs (completions: top-N dicts per token), echo.
with_logprobs = client.completions.create(model=args.model, prompt=PROMPT, max_tokens=4, logprobs=3, **GREEDY)
lp = with_logprobs.choices[0].logprobs
check("completion logprobs", len(lp.tokens) == 4 and len(lp.token_logprobs) == 4
      and all(len(top) <= 3 and top for top in lp.top_logprobs)
      and all(value <= 0 for value in lp.token_logprobs), f"{lp}")
check("greedy token is the top logprob", all(abs(max(top.values()) - value) < 1e-4
                                             for top, value in zip(lp.top_logprobs, lp.token_logprobs)), f"{lp}")
echoed = client.completions.create(model=args.model, prompt=PROMPT, max_tokens=4, echo=True, **GREEDY)
check("echo", echoed.choices[0].text.startswith(PROMPT), f"{echoed.choices[0].text!r}")

# Seeds: the same seed gives the same sample.
def sample(seed):
    return client.completions.create(model=args.model, prompt=PROMPT, max_tokens=12, temperature=1.0, seed=seed,
                                     extra_body={"ignore_eos": True}).choices[0].text
first = sample(42)
check("seeded sampling is reproducible", sample(42) == first)
check("different seeds differ", any(sample(seed) != first for seed in (1, 2, 3)))

# Errors surface as the client's own exception types, in OpenAI's shape.
expect_error("n=2 is a 400", openai.BadRequestError,
             lambda: client.completions.create(model=args.model, prompt=PROMPT, n=2), 400)
body = expect_error("wrong type names the field", openai.BadRequestError,
                    lambda: client.completions.create(model=args.model, prompt=PROMPT,
                                                      extra_body={"temperature": "hot"}), 400)
check("param names the field", body.get("param") == "temperature", f"{body}")
expect_error("max_tokens 0 is a 400", openai.BadRequestError,
             lambda: client.completions.create(model=args.model, prompt=PROMPT, max_tokens=0), 400)
expect_error("unknown model is a 404", openai.NotFoundError,
             lambda: client.completions.create(model="no-such-model", prompt=PROMPT), 404)
try:
    urllib.request.urlopen(urllib.request.Request(args.base_url + "/v1/nowhere",
                                                  headers={"Authorization": f"Bearer {args.api_key}"}))
    check("unknown route is a 404", False, "it answered 200")
except urllib.error.HTTPError as error:
    check("unknown route is a 404 in OpenAI's shape", error.code == 404 and "error" in json.load(error), error.code)

if args.chat:
    messages = [{"role": "user", "content": "Tell me about foxes."}]
    chat = client.chat.completions.create(model=args.model, messages=messages, max_tokens=12, **GREEDY)
    content = chat.choices[0].message.content
    check("chat", chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens == 12, f"{chat}")
    capped = client.chat.completions.create(model=args.model, messages=messages, max_completion_tokens=5,
                                            max_tokens=50, **GREEDY)
    check("max_completion_tokens wins over max_tokens", capped.usage.completion_tokens == 5
          and capped.choices[0].finish_reason == "length", f"{capped.usage}")
    pieces = list(client.chat.completions.create(model=args.model, messages=messages, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    streamed = "".join((c.choices[0].delta.content or "") for c in pieces if c.choices)
    check("streamed chat equals whole", streamed == content, f"{streamed!r} vs {content!r}")
    check("chat stream starts with the role", pieces[0].choices[0].delta.role == "assistant")
    check("chat stream usage", pieces[-1].usage is not None and pieces[-1].usage.completion_tokens == 12)
    chat_lp = client.chat.completions.create(model=args.model, messages=messages, max_tokens=3, logprobs=True,
                                             top_logprobs=2, **GREEDY)
    entries = chat_lp.choices[0].logprobs.content
    check("chat logprobs", len(entries) == 3 and all(len(e.top_logprobs) == 2 for e in entries)
          and all(e.bytes == list(e.token.encode()) for e in entries), f"{entries}")
    if args.chat_template_file:
        spec = importlib.util.spec_from_file_location(
            "reference", pathlib.Path(__file__).resolve().parents[2] / "scripts" / "render-chat-template.py")
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
        conversation = [{"role": "system", "content": "Be brief. Ünïcödé ✓"}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "{{ not jinja }}"}]
        rendered = reference.render(reference.make_environment(), {}, {
            "template": pathlib.Path(args.chat_template_file).read_text(), "messages": conversation,
            "add_generation_prompt": True, "bos_token": args.bos, "eos_token": args.eos})
        chat = client.chat.completions.create(model=args.model, messages=conversation, max_tokens=8, **GREEDY)
        plain = client.completions.create(model=args.model, prompt=rendered, max_tokens=8, temperature=0,
                                          extra_body={"ignore_eos": True, "add_special_tokens": False})
        check("chat equals a completion of jinja2's rendering", chat.usage.prompt_tokens == plain.usage.prompt_tokens
              and chat.choices[0].message.content == plain.choices[0].text,
              f"{chat.usage} {plain.usage} {chat.choices[0].message.content!r} {plain.choices[0].text!r}")
    expect_error("chat n=3 is a 400", openai.BadRequestError,
                 lambda: client.chat.completions.create(model=args.model, messages=messages, n=3), 400)
else:
    expect_error("chat without a template is a 400", openai.BadRequestError,
                 lambda: client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "x"}]),
                 400)
print("all checks passed")
