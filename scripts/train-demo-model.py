#!/usr/bin/env python3
"""Train the demo model: a small Mixtral (8 experts, top-2) that writes English, on Debian's fortunes.

Corpus: the English fortune files Debian's `fortunes` package installs in /usr/share/games/fortunes
(`apt-get install fortunes`; every category but `ascii-art` and `translate-me`), split at their `%`
lines into about 16,000 fortunes, shuffled with the seed; 5% are held out for validation. Each
training fortune is one document ending in <|endoftext|>; a third of them are also written as a chat
("Tell me something about food." → a fortune of that category) in the model's chat template, so chat
requests get an answer in the assistant's turn.

Tokenizer: byte-level BPE (GPT-2's pre-tokenizer), 4096 tokens, trained by Hugging Face `tokenizers`
on the training fortunes. Model: transformers' MixtralForCausalLM, hidden 256, 6 layers, 8 heads
(2 KV heads), experts of 384, 17.3M parameters; AdamW with warm-up and cosine decay, the router's load
balancing loss on, sequences of 256 tokens in batches of 16, f32 on the CPU, fixed seed.

It writes the model in bf16 (config, generation config, tokenizer, chat template), reloads it with
transformers and records greedy continuations of fixed prompts (transformers in f32 on the saved bf16
weights) for the test that compares ExpertMesh with transformers. About 45 minutes on 2 cores.

Needs: pip install -r scripts/requirements-fixtures.txt; apt-get install fortunes
Examples:
  python3 scripts/train-demo-model.py                       # models/demo + Tests/Fixtures/demo/expected.json
  python3 scripts/train-demo-model.py --steps 50 --out /tmp/demo-quick --expected /tmp/demo-quick.json
  python3 scripts/train-demo-model.py --only-expected       # re-record transformers' outputs for models/demo
  python3 scripts/train-demo-model.py --validation-out Tests/Fixtures/demo/validation.json
                                                            # the held-out fortunes' tokens and transformers'
                                                            # loss on each window (for `expertmesh perplexity`)
"""
import argparse
import json
import math
import os
import random
import re
import sys
import time

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, MixtralConfig, MixtralForCausalLM

FORTUNES = "/usr/share/games/fortunes"
SKIPPED_CATEGORIES = {"ascii-art", "translate-me"}
SPECIAL_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] | trim + '<|end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}")
# What a user asks for a fortune of each category (categories not named here answer "life").
TOPICS = {"computers": "computers", "linux": "Linux", "linuxcookie": "Linux", "perl": "Perl", "science": "science",
          "food": "food", "love": "love", "work": "work", "politics": "politics", "law": "the law",
          "medicine": "medicine", "education": "school", "sports": "sports", "pets": "pets", "kids": "children",
          "literature": "books", "wisdom": "wisdom", "people": "people", "songs-poems": "poetry", "art": "art",
          "men-women": "men and women", "startrek": "Star Trek", "drugs": "drugs", "news": "the news",
          "magic": "magic", "tao": "the Tao", "riddles": "riddles", "definitions": "words", "debian": "Debian",
          "goedel": "logic", "paradoxum": "paradoxes", "zippy": "Zippy the Pinhead", "humorists": "humour"}
REQUESTS = ["Tell me something about {}.", "Do you know a saying about {}?", "Share a thought on {}.",
            "What do people say about {}?", "Give me a quote about {}."]
# Prompts whose greedy continuations the test compares with transformers.
PLAIN_PROMPTS = ["The best thing about computers is", "Love is", "A good programmer", "Once upon a time"]
CHAT_PROMPTS = [[{"role": "user", "content": "Tell me something about food."}],
                [{"role": "user", "content": "Give me a quote about wisdom."}]]
GREEDY_TOKENS = 24


def read_fortunes():
    if not os.path.isdir(FORTUNES):
        sys.exit(f"train-demo-model: {FORTUNES} is missing: install Debian's fortunes package (apt-get install fortunes)")
    fortunes = []
    for category in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, category)
        if "." in category or category in SKIPPED_CATEGORIES or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for text in re.split(r"^%$", f.read(), flags=re.M):
                lines = [line.rstrip().expandtabs(4) for line in text.strip("\n").split("\n")]
                text = re.sub(r" {5,}", "    ", "\n".join(lines)).strip("\n")
                if text.strip():
                    fortunes.append((category, text))
    return fortunes


def chat_document(category, text, rng):
    request = rng.choice(REQUESTS).format(TOPICS.get(category, "life"))
    return f"<|user|>\n{request}<|end|>\n<|assistant|>\n{text.strip()}<|end|>\n"


def documents(fortunes, rng, chat_share):
    docs = [text for _, text in fortunes]
    docs += [chat_document(category, text, rng) for category, text in fortunes if rng.random() < chat_share]
    rng.shuffle(docs)
    return docs


def train_tokenizer(docs, vocab_size):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(docs, trainer)
    return tokenizer


def token_stream(tokenizer, docs, end_id):
    ids = []
    for encoding in tokenizer.encode_batch(docs):
        ids.extend(encoding.ids)
        ids.append(end_id)
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def validation_loss(model, tokens, length):
    model.eval()
    usable = (len(tokens) - 1) // length * length
    inputs, targets = tokens[:usable].view(-1, length), tokens[1:usable + 1].view(-1, length)
    total = 0.0
    for start in range(0, len(inputs), 32):
        logits = model(input_ids=inputs[start:start + 32]).logits
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets[start:start + 32].flatten(),
                                                   reduction="sum").item()
    model.train()
    return total / targets.numel()


def train(args, tokenizer, train_tokens, val_tokens):
    config = MixtralConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=256, intermediate_size=384, num_hidden_layers=6,
        num_attention_heads=8, num_key_value_heads=2, head_dim=32, num_local_experts=8, num_experts_per_tok=2,
        max_position_embeddings=1024, rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
        output_router_logits=True, router_aux_loss_coef=0.02, sliding_window=None,
        bos_token_id=None, eos_token_id=tokenizer.token_to_id("<|endoftext|>"),
        pad_token_id=tokenizer.token_to_id("<|endoftext|>"))
    model = MixtralForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {parameters / 1e6:.1f}M parameters", file=sys.stderr)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    length, batch = args.sequence, args.batch
    generator = torch.Generator().manual_seed(args.seed)
    history, started = [], time.time()
    for step in range(1, args.steps + 1):
        warmup = min(1.0, step / 100)
        lr = args.lr * warmup * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(train_tokens) - length - 1, (batch,), generator=generator)
        inputs = torch.stack([train_tokens[s:s + length] for s in starts])
        out = model(input_ids=inputs, labels=inputs)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.eval_every == 0 or step == args.steps:
            val = validation_loss(model, val_tokens, length)
            rate = step * batch * length / (time.time() - started)
            history.append({"step": step, "train_loss": round(out.loss.item(), 4), "validation_loss": round(val, 4)})
            print(f"step {step}/{args.steps}: train loss {out.loss.item():.3f} (with router loss), validation loss "
                  f"{val:.3f} (perplexity {math.exp(val):.1f}), {rate:.0f} tokens/s", file=sys.stderr)
    return model, history, parameters


def save(model, tokenizer, out):
    os.makedirs(out, exist_ok=True)
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(out)
    end, turn_end = tokenizer.token_to_id("<|endoftext|>"), tokenizer.token_to_id("<|end|>")
    GenerationConfig(eos_token_id=[end, turn_end], pad_token_id=end, bos_token_id=None).save_pretrained(out)
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>", "add_bos_token": False, "model_max_length": 1024,
                   "chat_template": CHAT_TEMPLATE}, f, indent=2)


def record_expected(out, expected_path, extra):
    """transformers' greedy tokens for fixed prompts, in f32 on the saved bf16 weights."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    cases = [{"prompt": p, "prompt_tokens": tokenizer(p)["input_ids"]} for p in PLAIN_PROMPTS]
    for messages in CHAT_PROMPTS:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        cases.append({"messages": messages, "prompt_tokens": list(ids)})
    for case in cases:
        tokens, margins = list(case["prompt_tokens"]), []
        with torch.no_grad():
            for _ in range(GREEDY_TOKENS):
                logits = model(input_ids=torch.tensor([tokens])).logits[0, -1]
                top = torch.topk(logits, 2).values
                margins.append((top[0] - top[1]).item())
                tokens.append(int(torch.argmax(logits)))
        case["greedy_tokens"] = tokens[len(case["prompt_tokens"]):]
        case["text"] = tokenizer.decode(case["greedy_tokens"])
        case["min_logit_margin"] = min(margins)
        print(f"  {case.get('prompt') or case['messages'][0]['content']!r} → {case['text']!r}", file=sys.stderr)
    record = {"model": os.path.relpath(out, os.path.dirname(os.path.abspath(expected_path))),
              "cases": cases, "reference": "transformers in f32 on the saved bf16 weights, greedy, no early stop",
              "transformers_version": transformers.__version__, "torch_version": torch.__version__, **extra}
    os.makedirs(os.path.dirname(os.path.abspath(expected_path)), exist_ok=True)
    with open(expected_path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


def write_validation(args, path, windows=40):
    """The held-out fortunes as models/demo's tokenizer encodes them (the same split as training),
    and transformers' loss (f32 on the saved bf16 weights) on each of the first `windows` windows of
    --sequence tokens, each predicting the token after each position as `validation_loss` does."""
    from tokenizers import Tokenizer as SavedTokenizer
    fortunes = read_fortunes()
    random.Random(args.seed).shuffle(fortunes)
    val_docs = [text for _, text in fortunes[:len(fortunes) // 20]]
    tokenizer = SavedTokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
    tokens = token_stream(tokenizer, val_docs, tokenizer.token_to_id("<|endoftext|>"))
    model = transformers.AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.float32).eval()
    length, losses = args.sequence, []
    with torch.no_grad():
        for window in range(min(windows, (len(tokens) - 1) // length)):
            start = window * length
            logits = model(input_ids=tokens[start:start + length].view(1, -1)).logits[0]
            losses.append(torch.nn.functional.cross_entropy(logits, tokens[start + 1:start + length + 1]).item())
    record = {"tokens": tokens.tolist(), "sequence": length, "window_losses": losses,
              "reference": "transformers in f32 on the saved bf16 weights; mean cross-entropy per window",
              "transformers_version": transformers.__version__, "torch_version": torch.__version__}
    with open(path, "w") as f:
        json.dump(record, f)
        f.write("\n")
    mean = sum(losses) / len(losses)
    print(f"wrote {path}: {len(tokens)} tokens; loss over {len(losses)} windows {mean:.4f} "
          f"(perplexity {math.exp(mean):.1f})", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="models/demo", help="model directory to write (default: models/demo)")
    parser.add_argument("--expected", default="Tests/Fixtures/demo/expected.json",
                        help="where to record transformers' greedy outputs")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sequence", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--only-expected", action="store_true", help="skip training; re-record --expected from --out")
    parser.add_argument("--validation-out", help="skip training; write the held-out tokens and transformers' losses")
    args = parser.parse_args()
    if args.validation_out:
        write_validation(args, args.validation_out)
        return
    if args.only_expected:
        record_expected(args.out, args.expected, {})
        return
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    fortunes = read_fortunes()
    rng = random.Random(args.seed)
    rng.shuffle(fortunes)
    held_out = len(fortunes) // 20
    val_fortunes, train_fortunes = fortunes[:held_out], fortunes[held_out:]
    train_docs = documents(train_fortunes, rng, chat_share=1 / 3)
    val_docs = [text for _, text in val_fortunes]
    tokenizer = train_tokenizer(train_docs, 4096)
    end = tokenizer.token_to_id("<|endoftext|>")
    train_tokens, val_tokens = token_stream(tokenizer, train_docs, end), token_stream(tokenizer, val_docs, end)
    print(f"corpus: {len(train_fortunes)} training fortunes ({len(train_tokens)} tokens with the chat copies), "
          f"{len(val_fortunes)} held out ({len(val_tokens)} tokens)", file=sys.stderr)
    model, history, parameters = train(args, tokenizer, train_tokens, val_tokens)
    save(model, tokenizer, args.out)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "expected", "only_expected")}
    record_expected(args.out, args.expected, {
        "parameters": parameters, "training": settings, "corpus": f"{FORTUNES} (Debian fortunes), "
        f"{len(train_fortunes)} training / {len(val_fortunes)} validation fortunes",
        "validation_loss": history[-1]["validation_loss"], "history": history})
    print(f"wrote {args.out} and {args.expected}; validation loss {history[-1]['validation_loss']:.3f} "
          f"(held-out fortunes, plain text)", file=sys.stderr)


if __name__ == "__main__":
    main()
