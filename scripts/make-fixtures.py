#!/usr/bin/env python3
"""Create tiny random-weight MoE models with Hugging Face transformers and record its outputs.

For each fixture the folder holds a normal model directory (config.json, *.safetensors, ...) plus
  expected.json  prompt_tokens, greedy_tokens, versions, routing/logit margins
  logits.npy     float32 [prompt_len + generated - 1, vocab]: every prompt position, then each
                 decode step except after the last generated token.
The Swift tests (Tests/MeshModelsTests, Tests/ClusterTests) compare against these.

Random inits are widened (initializer_range) and seeds are searched so that router top-k choices
and greedy logits are not near-ties (margins >= 1e-3), so f32 rounding cannot flip a choice.

Needs: pip install -r scripts/requirements-fixtures.txt   (torch, transformers, tokenizers)
Example: python3 scripts/make-fixtures.py --out Tests/Fixtures/models
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import (DbrxConfig, DbrxForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM, GptOssConfig,
                          GptOssForCausalLM, Glm4MoeConfig, Glm4MoeForCausalLM, LlamaConfig, LlamaForCausalLM, Llama4Config, Llama4ForCausalLM, Llama4ForConditionalGeneration,
                          Llama4TextConfig, MistralConfig, MistralForCausalLM, MixtralConfig, MixtralForCausalLM,
                          OlmoeConfig, OlmoeForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)

GENERATED = 6
VOCAB = 320


def train_tokenizer(directory, vocab_size):
    """A Mistral-style SentencePiece BPE (Metaspace, byte fallback) trained on inline text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    corpus = [
        "The quick brown fox jumps over the lazy dog.", "Mixture of experts models route each token to a few experts.",
        "ExpertMesh splits one model over many hosts by expert parallelism.", "Hello world! How are you today?",
        "def forward(x):\n    return x * 2", "Numbers 12345 and 3.14159 appear here.", "Café naïve résumé — ünïcödé.",
    ] * 20
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  initial_alphabet=[], show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
    return tokenizer


def text_config(model):
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def router_margin(model, input_ids):
    """Smallest gap between the k-th and (k+1)-th router score over MoE layers and tokens."""
    margins = []
    hooks = []
    config = text_config(model)
    k = getattr(config, "num_experts_per_tok", None) or getattr(getattr(config, "ffn_config", None), "moe_top_k", None)
    if k is None:
        return 1.0   # a dense model routes nothing

    def hook(_module, inputs, _output):
        x = inputs[0].reshape(-1, inputs[0].shape[-1])
        logits = torch.nn.functional.linear(x.float(), _module.weight.float(),
                                            _module.bias.float() if getattr(_module, "bias", None) is not None else None)
        if hasattr(_module, "e_score_correction_bias"):
            # grouped sigmoid routing: the group choice and the expert choice must both be clear
            scores = logits.sigmoid() + _module.e_score_correction_bias
            groups = scores.view(-1, config.n_group, scores.shape[-1] // config.n_group)
            group_scores = groups.topk(2, dim=-1).values.sum(-1)
            if config.topk_group < config.n_group:
                g = torch.topk(group_scores, config.topk_group + 1, dim=-1).values
                margins.append(float((g[:, -2] - g[:, -1]).min()))
            keep = torch.zeros_like(group_scores).scatter_(1, torch.topk(group_scores, config.topk_group, dim=-1)[1], 1)
            logits = scores.masked_fill(~keep.repeat_interleave(scores.shape[-1] // config.n_group, 1).bool(), -1e9)
        elif config.model_type not in ("llama4_text", "gpt_oss"):   # these choose on the logits
            logits = torch.softmax(logits.float(), dim=-1)
        top = torch.topk(logits, k + 1, dim=-1).values
        margins.append(float((top[:, k - 1] - top[:, k]).min()))

    for name, module in model.named_modules():
        if name.endswith(("block_sparse_moe.gate", "mlp.gate", "feed_forward.router", "ffn.router.layer", "mlp.router")):
            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(input_ids)
    for h in hooks:
        h.remove()
    return min(margins) if margins else 1.0


def run_reference(model, prompt):
    """Greedy generation with a KV cache; returns (generated ids, logits rows, min top1-top2 gap)."""
    model.eval()
    rows, generated, gaps = [], [], []
    with torch.no_grad():
        out = model(torch.tensor([prompt]), use_cache=True)
        logits = out.logits[0].float()
        rows.extend(logits.numpy())
        cache = out.past_key_values
        last = logits[-1]
        for step in range(GENERATED):
            top = torch.topk(last, 2).values
            gaps.append(float(top[0] - top[1]))
            token = int(torch.argmax(last))
            generated.append(token)
            if step == GENERATED - 1:
                break
            out = model(torch.tensor([[token]]), cache=cache, use_cache=True)
            cache = out.past_key_values
            last = out.logits[0, -1].float()
            rows.append(last.numpy())
    return generated, np.stack(rows).astype("<f4"), min(gaps)


def check_greedy_matches_generate(model, prompt, generated):
    with torch.no_grad():
        ids = model.generate(torch.tensor([prompt]), max_new_tokens=GENERATED, do_sample=False, min_new_tokens=GENERATED,
                             pad_token_id=0)
    assert ids[0, len(prompt):].tolist() == generated, (ids, generated)


def write_fixture(directory, model, prompt, notes, extra=None, save=None, reload=None):
    if os.path.exists(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    tokenizer_path = None
    if extra and "tokenizer" in extra:
        tokenizer_path = extra["tokenizer"]
    (save or (lambda d: model.save_pretrained(d)))(directory)
    reference = reload(directory) if reload else model
    generated, logits, logit_margin = run_reference(reference, prompt)
    check_greedy_matches_generate(reload(directory) if reload else reference, prompt, generated)
    margin = router_margin(reference, torch.tensor([prompt + generated]))
    np.save(os.path.join(directory, "logits.npy"), logits)
    expected = {
        "architecture": type(model).__name__, "model_type": model.config.model_type,
        "prompt_tokens": prompt, "greedy_tokens": generated, "logits_file": "logits.npy",
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "min_router_margin": margin, "min_logit_margin": logit_margin, "notes": notes,
    }
    if extra:
        expected.update({k: v for k, v in extra.items() if k != "tokenizer"})
    with open(os.path.join(directory, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
    return margin, logit_margin, generated


def f32_rounding_error(model, prompt):
    """Max |logits in f32 - logits in f64| over the prompt: how much f32 rounding alone moves the
    reference. A random model whose residual stream drifts to a large mean (seen with DBRX's
    LayerNorms) is ill-conditioned, and two correct f32 implementations then differ by more than 1e-4."""
    import copy
    with torch.no_grad():
        f32 = model(torch.tensor([prompt])).logits[0]
        reference = copy.deepcopy(model).double()
        reference.set_experts_implementation("eager")   # the grouped products take no f64
        f64 = reference(torch.tensor([prompt])).logits[0]
    return float((f32.double() - f64).abs().max())


def search(build, prompt_for, accept=1e-3, seeds=range(1, 200), view=lambda m: m, conditioning=None):
    """First seed whose model has router and logit margins >= accept and varied greedy tokens (and,
    given `conditioning`, an f32 reference within that of the f64 one)."""
    for seed in seeds:
        torch.manual_seed(seed)
        model = build().eval()
        prompt = prompt_for(model)
        generated, _, logit_margin = run_reference(view(model), prompt)
        margin = router_margin(view(model), torch.tensor([prompt + generated]))
        if conditioning is not None and f32_rounding_error(view(model), prompt) > conditioning:
            continue
        if margin >= accept and logit_margin >= accept and len(set(generated)) >= 3:
            return seed, model, prompt
    raise SystemExit("no seed gave clear margins; widen initializer_range")


def random_prompt(seed, vocab, length=10):
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(3, vocab, size=length)]


def llama4_text_view(model):
    """The text half of a Llama4ForConditionalGeneration as a Llama4ForCausalLM with the same
    weights (transformers 5.24's multimodal forward fails on text-only input)."""
    return model.language_model.eval()


def fused_mixtral_save(model):
    """transformers 5 keeps Mixtral experts fused in memory but saves the classic per-expert
    names; this writes the in-memory (fused) names instead: mlp.experts.gate_up_proj [E, 2I, H]."""
    def save(directory):
        model.config.save_pretrained(directory)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    return save


def mixtral_config(**overrides):
    base = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2, rope_theta=1e6,
                tie_word_embeddings=False, initializer_range=0.25, rms_norm_eps=1e-5, max_position_embeddings=256,
                bos_token_id=1, eos_token_id=2)
    base.update(overrides)
    return MixtralConfig(**base)


def llama4_text_config(**overrides):
    base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=48, intermediate_size_mlp=96, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=1,
                interleave_moe_layer_step=2, use_qk_norm=True, attention_chunk_size=4, attn_temperature_tuning=True,
                floor_scale=2, attn_scale=0.1, rms_norm_eps=1e-5, initializer_range=0.25, tie_word_embeddings=False,
                max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    base.update(overrides)
    return Llama4TextConfig(**base)


FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_quantize(weight):
    """[..., rows, cols] (cols a multiple of 32) → (blocks uint8 [..., rows, cols/32, 16], scales uint8
    [..., rows, cols/32]) as the gpt-oss checkpoints store them: E2M1 values, the even one in the low
    nibble, one power-of-two scale (E8M0, bias 127) per 32 values, chosen so the block's largest value fits 6."""
    *prefix, rows, cols = weight.shape
    groups = weight.reshape(*prefix, rows, cols // 32, 32).float()
    largest = groups.abs().amax(-1).clamp(min=1e-30)
    exponent = torch.ceil(torch.log2(largest / 6.0)).clamp(-127, 127)
    scaled = groups / torch.ldexp(torch.ones_like(exponent), exponent.int()).unsqueeze(-1)
    index = (scaled.unsqueeze(-1) - FP4_VALUES).abs().argmin(-1).to(torch.uint8)   # nearest E2M1 value
    blocks = index[..., 0::2] | (index[..., 1::2] << 4)
    return blocks, (exponent + 127).to(torch.uint8)


def mxfp4_dequantize(blocks, scales):
    """The values `mxfp4_quantize` stored, [..., rows, cols] in f32."""
    values = torch.stack([FP4_VALUES[(blocks & 0x0F).long()], FP4_VALUES[(blocks >> 4).long()]], -1).flatten(-2)
    values = torch.ldexp(values, (scales.int() - 127).unsqueeze(-1))
    return values.flatten(-2)


def gpt_oss_mxfp4(directory, report):
    """gpt-oss with its experts stored as MXFP4 blocks, as the hub checkpoints ship them; the reference
    is transformers' own: the checkpoint loaded with Mxfp4Config(dequantize=True)."""
    from transformers import Mxfp4Config
    config = GptOssConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16, num_local_experts=8, num_experts_per_tok=2, sliding_window=4,
                          rms_norm_eps=1e-5, initializer_range=0.25, max_position_embeddings=256, bos_token_id=1,
                          eos_token_id=2, tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 1e4})

    def build():
        model = GptOssForCausalLM._from_config(config, attn_implementation="eager")
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith(("bias", "sinks")):
                    parameter.copy_(torch.randn_like(parameter) * 0.5)
                if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
                    # keep exactly what MXFP4 can hold, so the search sees the model the checkpoint stores
                    parameter.copy_(mxfp4_dequantize(*mxfp4_quantize(parameter.transpose(1, 2))).transpose(1, 2))
        return model

    seed, model, prompt = search(build, lambda m: random_prompt(61, VOCAB, 12), seeds=range(4000, 4200))

    def save(d):
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith(("gate_up_proj", "down_proj"))}
        for name, tensor in model.state_dict().items():
            if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
                blocks, scales = mxfp4_quantize(tensor.transpose(1, 2))   # rows: the outputs, as [E, out, in]
                state[name + "_blocks"], state[name + "_scales"] = blocks.contiguous(), scales.contiguous()
        save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        config_dict = model.config.to_dict()
        config_dict["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config_dict, f, indent=2)

    reload = lambda d: GptOssForCausalLM.from_pretrained(d, quantization_config=Mxfp4Config(dequantize=True),
                                                         attn_implementation="eager", dtype=torch.float32).eval()
    report["gpt_oss-mxfp4"] = write_fixture(directory, model, prompt,
                                            f"seed {seed}; experts stored as MXFP4 blocks/scales (our quantiser); reference: "
                                            "transformers' own dequantisation (Mxfp4Config(dequantize=True)), f32",
                                            save=save, reload=reload)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="Tests/Fixtures/models")
    parser.add_argument("--only", nargs="*", help="fixture names to (re)make")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float32)
    wanted = lambda name: not args.only or name in args.only
    report = {}

    if wanted("mixtral"):
        directory = os.path.join(args.out, "mixtral")
        os.makedirs(directory, exist_ok=True)
        tokenizer = train_tokenizer(directory, VOCAB)
        text = "The quick brown fox jumps over the lazy dog"
        prompt = tokenizer.encode(text).ids
        shutil.copy(os.path.join(directory, "tokenizer.json"), "/tmp/em-tokenizer.json")
        shutil.copy(os.path.join(directory, "tokenizer_config.json"), "/tmp/em-tokenizer_config.json")
        seed, model, _ = search(lambda: MixtralForCausalLM(mixtral_config()), lambda m: prompt)
        report["mixtral"] = write_fixture(directory, model, prompt, f"seed {seed}; per-expert classic layout (transformers 5 save_pretrained)",
                                          extra={"prompt_text": text})
        shutil.copy("/tmp/em-tokenizer.json", os.path.join(directory, "tokenizer.json"))
        shutil.copy("/tmp/em-tokenizer_config.json", os.path.join(directory, "tokenizer_config.json"))

    if wanted("mixtral-fused"):
        seed, model, prompt = search(lambda: MixtralForCausalLM(mixtral_config(num_hidden_layers=2)), lambda m: random_prompt(5, VOCAB), seeds=range(300, 500))
        report["mixtral-fused"] = write_fixture(
            os.path.join(args.out, "mixtral-fused"), model, prompt,
            f"seed {seed}; fused experts: mlp.experts.gate_up_proj [E, 2I, H] (gate rows first), mlp.experts.down_proj [E, H, I], router mlp.gate.weight",
            save=fused_mixtral_save(model), reload=lambda d: MixtralForCausalLM.from_pretrained(d).eval())

    if wanted("mixtral-bf16"):
        def build():
            model = MixtralForCausalLM(mixtral_config())
            # round the weights to bf16 so the f32 reference runs on exactly the saved values
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.to(torch.bfloat16).to(torch.float32))
            return model
        seed, model, prompt = search(build, lambda m: random_prompt(7, VOCAB), seeds=range(500, 700))
        report["mixtral-bf16"] = write_fixture(
            os.path.join(args.out, "mixtral-bf16"), model, prompt, f"seed {seed}; weights saved as bf16, reference in f32 on the same bf16 values",
            save=lambda d: model.to(torch.bfloat16).save_pretrained(d),
            reload=lambda d: MixtralForCausalLM.from_pretrained(d, dtype=torch.bfloat16).to(torch.float32).eval())

    qwen = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, moe_intermediate_size=32, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=8, num_experts_per_tok=2,
                rms_norm_eps=1e-6, initializer_range=0.25, rope_theta=1e6, max_position_embeddings=256,
                bos_token_id=1, eos_token_id=2)
    if wanted("qwen3_moe"):
        seed, model, prompt = search(lambda: Qwen3MoeForCausalLM(Qwen3MoeConfig(**qwen, norm_topk_prob=False, decoder_sparse_step=1,
                                                                                mlp_only_layers=[1], tie_word_embeddings=True)),
                                     lambda m: random_prompt(11, VOCAB), seeds=range(700, 900))
        report["qwen3_moe"] = write_fixture(os.path.join(args.out, "qwen3_moe"), model, prompt,
                                            f"seed {seed}; layer 1 dense (mlp_only_layers); tied embeddings; sharded",
                                            save=lambda d: model.save_pretrained(d, max_shard_size="300KB"))
    if wanted("qwen3_moe-norm"):
        seed, model, prompt = search(lambda: Qwen3MoeForCausalLM(Qwen3MoeConfig(**qwen, norm_topk_prob=True, tie_word_embeddings=False)),
                                     lambda m: random_prompt(13, VOCAB), seeds=range(900, 1100))
        report["qwen3_moe-norm"] = write_fixture(os.path.join(args.out, "qwen3_moe-norm"), model, prompt, f"seed {seed}; norm_topk_prob")

    if wanted("llama4_text"):
        seed, model, prompt = search(lambda: Llama4ForCausalLM._from_config(llama4_text_config(), attn_implementation="eager"),
                                     lambda m: random_prompt(17, VOCAB, 9), seeds=range(1100, 1300))
        report["llama4_text"] = write_fixture(
            os.path.join(args.out, "llama4_text"), model, prompt,
            f"seed {seed}; eager attention; layers 1,3 MoE; layer 3 NoPE with temperature tuning; chunk 4; llama3 rope scaling",
            reload=lambda d: Llama4ForCausalLM.from_pretrained(d, attn_implementation="eager").eval())

    if wanted("llama4_text-behemoth"):
        # Behemoth's assumed topology (Tests/Fixtures/configs/llama4-behemoth-assumed.json) in miniature:
        # every layer MoE with 16 experts, top-1 plus a shared expert, chunked attention, every 4th layer NoPE.
        behemoth = llama4_text_config(num_hidden_layers=8, num_local_experts=16, num_experts_per_tok=1,
                                      interleave_moe_layer_step=1, intermediate_size=32, no_rope_layers=[1, 1, 1, 0] * 2)
        seed, model, prompt = search(lambda: Llama4ForCausalLM._from_config(behemoth, attn_implementation="eager"),
                                     lambda m: random_prompt(23, VOCAB, 9), seeds=range(1500, 1900))
        report["llama4_text-behemoth"] = write_fixture(
            os.path.join(args.out, "llama4_text-behemoth"), model, prompt,
            f"seed {seed}; eager attention; Behemoth's topology: 8 MoE layers of 16 experts, top-1 + shared expert, "
            "chunk 4, layers 3 and 7 NoPE",
            reload=lambda d: Llama4ForCausalLM.from_pretrained(d, attn_implementation="eager").eval())

    if wanted("llama4"):
        def build():
            vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                          patch_size=14, vision_output_dim=16, projector_input_dim=16, projector_output_dim=16)
            config = Llama4Config(text_config=llama4_text_config(num_hidden_layers=2, no_rope_layers=[1, 0]).to_dict(),
                                  vision_config=vision)
            return Llama4ForConditionalGeneration._from_config(config, attn_implementation="eager")
        seed, model, prompt = search(build, lambda m: random_prompt(19, VOCAB, 9), seeds=range(1300, 1500), view=llama4_text_view)
        report["llama4"] = write_fixture(
            os.path.join(args.out, "llama4"), model, prompt,
            f"seed {seed}; Llama4ForConditionalGeneration checkpoint (vision tower included); reference logits from its "
            "language_model (a Llama4ForCausalLM) on the reloaded weights",
            reload=lambda d: llama4_text_view(Llama4ForConditionalGeneration.from_pretrained(d, attn_implementation="eager").eval()))

    # Dense models (served by the coordinator alone) and the other MoE families. Each is built with
    # eager attention and its reference computed on the reloaded checkpoint (a fresh model: dynamic
    # RoPE keeps state between calls in transformers).
    small = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, initializer_range=0.25, max_position_embeddings=256,
                 bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    deepseek = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, moe_intermediate_size=32, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8,
                    v_head_dim=12, n_routed_experts=8, n_group=2, topk_group=1, num_experts_per_tok=2, n_shared_experts=1,
                    first_k_dense_replace=1, routed_scaling_factor=2.5, norm_topk_prob=True, rms_norm_eps=1e-6,
                    initializer_range=0.25, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                    tie_word_embeddings=False)
    families = {
        "llama": (LlamaForCausalLM, LlamaConfig(**small, attention_bias=True,
                  rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
                  "attention biases on q/k/v/o; linear RoPE scaling (factor 2)"),
        "mistral": (MistralForCausalLM, MistralConfig(**small, sliding_window=4, rope_theta=1e6),
                    "sliding window 4 on every layer (a 12-token prompt reaches past it)"),
        "qwen2": (Qwen2ForCausalLM, Qwen2Config(**{**small, "num_hidden_layers": 4}, use_sliding_window=True, sliding_window=5,
                  max_window_layers=2, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                        "original_max_position_embeddings": 64}),
                  "q/k/v biases; sliding window 5 on layers 2-3 (max_window_layers 2); YaRN RoPE (factor 4)"),
        "qwen3": (Qwen3ForCausalLM, Qwen3Config(**{**small, "max_position_embeddings": 8},
                  rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 16.0}),
                  "dense Qwen 3 (q/k norm); dynamic NTK RoPE with max_position_embeddings 8, so the 12-token "
                  "prompt and every generated token take grown frequencies"),
        "qwen2_moe": (Qwen2MoeForCausalLM, Qwen2MoeConfig(**{**small, "num_hidden_layers": 3}, moe_intermediate_size=32,
                      shared_expert_intermediate_size=56, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
                      mlp_only_layers=[1], rope_theta=1e6),
                      "shared expert with its sigmoid gate; q/k/v biases; layer 1 dense (mlp_only_layers)"),
        "olmoe": (OlmoeForCausalLM, OlmoeConfig(**{k: v for k, v in small.items() if k != "head_dim"}, num_experts=8,
                  num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=3.0, rope_theta=1e4),
                  "q/k RMSNorm across heads; clip_qkv 3; softmax top-2 without renormalisation"),
        "glm4_moe": (Glm4MoeForCausalLM, Glm4MoeConfig(**small, moe_intermediate_size=32, n_routed_experts=8, n_group=2,
                     topk_group=1, num_experts_per_tok=2, n_shared_experts=2, first_k_dense_replace=1, routed_scaling_factor=2.5,
                     norm_topk_prob=True, use_qk_norm=True, attention_bias=True, partial_rotary_factor=0.5, rope_theta=1e4),
                     "layer 0 dense; grouped sigmoid routing (2 groups, 1 kept, random score-correction bias, scale 2.5); "
                     "2 shared experts; q/k/v biases; per-head q/k norm; RoPE on half of each head"),
        "dbrx": (DbrxForCausalLM, DbrxConfig(vocab_size=VOCAB, d_model=48, n_heads=4, n_layers=2, max_seq_len=256,
                 initializer_range=0.25, tie_word_embeddings=False,
                 attn_config={"kv_n_heads": 2, "clip_qkv": 2.0, "rope_theta": 5e5},
                 rope_parameters={"rope_type": "default", "rope_theta": 5e5},   # transformers 5 reads this one
                 ffn_config={"ffn_hidden_size": 32, "moe_num_experts": 8, "moe_top_k": 3, "moe_normalize_expert_weights": 1.0}),
                 "LayerNorms without bias; fused Wqkv clamped to ±2; top-3 of 8 renormalised by the 1-norm; experts "
                 "stacked as ffn.experts.mlp.w1/v1/w2 [E·I, H]"),
        "deepseek_v3": (DeepseekV3ForCausalLM, DeepseekV3Config(**deepseek, q_lora_rank=24, rope_interleave=True,
                        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                         "original_max_position_embeddings": 64, "mscale": 1.0, "mscale_all_dim": 0.8}),
                        "multi-head latent attention (q_lora_rank 24, kv_lora_rank 16, nope 8, rope 8, v 12), RoPE on "
                        "interleaved pairs with YaRN (factor 4, mscale_all_dim 0.8: softmax scale x mscale^2); layer 0 dense; "
                        "grouped sigmoid routing with a random correction bias, 1 shared expert"),
        "deepseek_v3-lite-bf16": (DeepseekV3ForCausalLM, DeepseekV3Config(**deepseek, q_lora_rank=None, rope_interleave=False,
                                  rope_theta=1e4),
                                  "bf16 checkpoint (reference in f32 on the same bf16 values); MLA without the low-rank "
                                  "query step (q_proj, as DeepSeek-V2-Lite), RoPE on rotate_half pairs"),
        "gpt_oss": (GptOssForCausalLM, GptOssConfig(**{**small, "intermediate_size": 32}, num_local_experts=8,
                    num_experts_per_tok=2, sliding_window=4, attention_bias=True,
                    rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0, "beta_fast": 32.0,
                                     "beta_slow": 1.0, "original_max_position_embeddings": 64, "truncate": False}),
                    "sliding window 4 on layers 0 and 2, full attention on 1; attention sinks, biases; YaRN without "
                    "truncation; router bias, softmax over the top-2 logits; experts with biases, clamped SwiGLU and "
                    "interleaved gate/up (dequantized: MXFP4 blocks are not covered here)"),
    }
    for offset, (name, (model_class, config, notes)) in enumerate(families.items()):
        if not wanted(name):
            continue
        directory = os.path.join(args.out, name)
        bf16 = name.endswith("-bf16")
        reload = lambda d, cls=model_class: (cls.from_pretrained(d, attn_implementation="eager", dtype=torch.bfloat16).float()
                                             if bf16 else cls.from_pretrained(d, attn_implementation="eager")).eval()
        def fresh(model, cls=model_class):
            # search on a copy made from the state dict, so dynamic RoPE state never leaks between runs
            copy = cls._from_config(model.config, attn_implementation="eager").eval()
            copy.load_state_dict(model.state_dict())
            return copy
        def build(cls=model_class, config=config):
            model = cls._from_config(config, attn_implementation="eager")
            with torch.no_grad():   # transformers starts score-correction biases at zero; make them count
                for name, buffer in model.named_buffers():
                    if name.endswith("e_score_correction_bias"):
                        buffer.copy_(torch.randn_like(buffer) * 0.5)
                if bf16:   # round to bf16 so the f32 reference runs on exactly the saved values
                    saved = list(model.parameters()) + [b for n, b in model.named_buffers() if n.endswith("correction_bias")]
                    for tensor in saved:
                        tensor.copy_(tensor.to(torch.bfloat16).to(torch.float32))
                if config.model_type == "gpt_oss":   # biases and sinks may start at zero; make them count
                    for name, parameter in model.named_parameters():
                        if name.endswith(("bias", "sinks")):
                            parameter.copy_(torch.randn_like(parameter) * 0.5)
                if config.model_type == "dbrx":   # its LayerNorm weights start at one; make them count
                    for name, parameter in model.named_parameters():
                        if name.endswith(("norm_1.weight", "norm_2.weight", "norm_f.weight")):
                            parameter.copy_(1 + torch.randn_like(parameter) * 0.3)
            return model
        seed, model, prompt = search(build,
                                     lambda m: random_prompt(23 + offset, VOCAB, 12), seeds=range(1500 + 200 * offset, 1700 + 200 * offset),
                                     view=fresh, conditioning=1e-5)
        save = (lambda d, m=model: m.to(torch.bfloat16).save_pretrained(d)) if bf16 else None
        report[name] = write_fixture(directory, model, prompt, f"seed {seed}; eager attention; {notes}", reload=reload, save=save)

    if wanted("gpt_oss-mxfp4"):
        gpt_oss_mxfp4(os.path.join(args.out, "gpt_oss-mxfp4"), report)

    for name, (router, logit, generated) in report.items():
        print(f"{name:16s} router margin {router:.4f}  logit margin {logit:.4f}  greedy {generated}")


if __name__ == "__main__":
    main()
