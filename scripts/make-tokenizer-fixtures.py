#!/usr/bin/env python3
"""Train small tokenizers with Hugging Face `tokenizers` and record how they encode and decode
test texts; Tests/MeshTokenizersTests checks the Swift tokenizer against these files.

Writes Tests/Fixtures/tokenizers/<name>/tokenizer.json and cases.json (a list of
{text, ids, ids_no_special, decoded, decoded_skip}) for:
  llama3-bytelevel         byte-level BPE, Llama 3 split regex, <|begin_of_text|> added, ignore_merges
  qwen-bytelevel           byte-level BPE, Qwen 2 regex (single digits), NFC normaliser, no BOS
  llama4-bytelevel         byte-level BPE, Llama 4 (o200k-style, case-aware) regex
  deepseek-bytelevel       byte-level BPE, DeepSeek V3's Sequence of Splits (digits, CJK runs, words)
  sentencepiece-bpe        Mistral style: Prepend/Replace normaliser, byte fallback, legacy decoder chain
  sentencepiece-metaspace  the newer form: Metaspace pre-tokeniser (prepend_scheme first) and decoder

Example: python3 scripts/make-tokenizer-fixtures.py --out Tests/Fixtures/tokenizers
"""
import argparse
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

# Llama 4 (o200k-style: case-aware words, contractions attached, "/" kept with newlines).
LLAMA4 = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
          r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# DeepSeek V3: a Sequence of Splits (digits, CJK runs, then a GPT-4-style pattern) before ByteLevel.
DEEPSEEK = [r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+",
            r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog. I'm sure we'll see they've gone.",
    "Mixture-of-experts models route each token to a few experts; ExpertMesh spreads them over hosts.",
    "def forward(self, x):\n    return self.down(silu(self.gate(x)) * self.up(x))\n",
    "for i in range(10):\n\tprint(i ** 2)  # squares",
    "Numbers: 0 1 2 3 12345 3.14159 2026-11-24 $100 50%",
    "Café, naïve, résumé, Zürich, São Paulo, Ελληνικά, русский язык, عربى",
    "你好，世界！这是一个测试。日本語のテキストも。한국어 문장.",
    "Emoji: 😀 🎉 👩‍💻 🇫🇷 ❤️",
] * 30

TEXTS = [
    "Hello world", " Hello world", "Hello world ", "  leading and trailing  ", "a  b   c", "\n\n\nx", "  ", "", "\t tab\tseparated",
    "1234567", "3.14159 and 2026-11-24", "I'm, we'll, they'RE, you'VE", "don't stop",
    "def f(x):\n    return x * 2\n", "for i in range(3):\n\tprint(i)",
    "Caf\u00e9", "Cafe\u0301", "naïve résumé", "你好，世界", "日本語のテキスト", "😀 🎉", "👩‍💻 🇫🇷", "rare: ☃ ⚛ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u0000\u0001 control",
    "The quick brown fox jumps over the lazy dog.", "mixed CASE Words", "lots\n\nof\n\n\nnewlines",
    "HTTPServer's JSONDecoder isn't camelCase", "path/to/file\n/next", "日本語とEnglish混在テキスト123456",
    # one long text: a SentencePiece-style tokenizer has no pre-tokeniser, so this is a single BPE word
    " ".join(CORPUS[:8]) * 3,
]


def byte_level(name, pattern, specials, bos, nfc, extra_added):
    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    patterns = pattern if isinstance(pattern, list) else [pattern]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in patterns]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                                 special_tokens=[(bos, tokenizer.token_to_id(bos))])
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    if extra_added:
        tokenizer.add_tokens(extra_added)
    return tokenizer, [s for s in specials]


def sentencepiece(metaspace):
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if metaspace:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=specials + [f"<0x{i:02X}>" for i in range(256)], show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tokenizer, specials


def write(out, name, tokenizer, specials):
    directory = os.path.join(out, name)
    os.makedirs(directory, exist_ok=True)
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    texts = TEXTS + [f"{specials[1]}hi{specials[2]}", f"x {specials[2]} y", f"{specials[0]} and {specials[1]}"]
    if name.startswith("llama3"):
        texts.append("call <tool> now")
    cases = []
    for text in texts:
        ids = tokenizer.encode(text).ids
        cases.append({
            "text": text, "ids": ids, "ids_no_special": tokenizer.encode(text, add_special_tokens=False).ids,
            "decoded": tokenizer.decode(ids, skip_special_tokens=False), "decoded_skip": tokenizer.decode(ids, skip_special_tokens=True),
        })
    with open(os.path.join(directory, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
    print(f"{name}: vocab {tokenizer.get_vocab_size()}, {len(cases)} cases")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="Tests/Fixtures/tokenizers")
    args = parser.parse_args()
    write(args.out, "llama3-bytelevel", *byte_level("llama3", LLAMA3, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], "<|begin_of_text|>", False, ["<tool>"]))
    write(args.out, "qwen-bytelevel", *byte_level("qwen", QWEN, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, True, []))
    write(args.out, "llama4-bytelevel", *byte_level("llama4", LLAMA4, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot|>"], "<|begin_of_text|>", False, []))
    write(args.out, "deepseek-bytelevel", *byte_level("deepseek", DEEPSEEK, ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<|EOT|>"], "<｜begin▁of▁sentence｜>", False, []))
    write(args.out, "sentencepiece-bpe", *sentencepiece(False))
    write(args.out, "sentencepiece-metaspace", *sentencepiece(True))


if __name__ == "__main__":
    main()
