"""Tiny HuggingFace `transformers` models with random weights, for tests.

Every builder returns ``(module, example_inputs)`` where ``module`` is an
``nn.Module`` in eval mode whose ``forward`` takes only tensors and returns a
single tensor, and ``example_inputs`` is a tuple of tensors. Nothing is
downloaded: models are built from small local configs and seeded with
``torch.manual_seed(0)``.

All of them export with ``torch.export.export(module, example_inputs)``
(non-strict, i.e. the default strict=False; strict=True is not needed and was
not used) followed by ``.run_decompositions()`` -- checked with torch 2.13 /
transformers 5.x. The transformer models use ``attn_implementation="eager"``
so attention shows up as explicit matmul/softmax ops. ("sdpa" works too: it
once failed for gpt2 in run_decompositions() -- "Cannot view a tensor with
shape ... and strides ..." -- which capture now fixes; the HF zoo below uses
each model's default attention.)
The decoders use ``use_cache=False`` so no KV-cache objects enter the graph.

    from tests.zoo import ALL
    for name, build in ALL.items():
        m, inputs = build()
        out = m(*inputs)
"""

from __future__ import annotations

import torch
from torch import nn

import transformers


SEQ_LEN = 16
BATCH = 2
VOCAB = 256


def _ids(vocab: int = VOCAB, batch: int = BATCH, seq: int = SEQ_LEN) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), dtype=torch.long)


class _LogitsWrapper(nn.Module):
    """forward(input_ids) -> logits for a causal LM."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.model = hf_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False, return_dict=True).logits


class _BertWrapper(nn.Module):
    """forward(input_ids, attention_mask) -> last_hidden_state."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.model = hf_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


class _ImageLogitsWrapper(nn.Module):
    """forward(pixel_values) -> logits for an image classifier."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.model = hf_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).logits


def gpt2():
    """GPT-2: 2 layers, d=64, 4 heads, vocab 256, context 64; input ids (2, 16)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,  # default 50256 is outside the tiny vocab
        attn_implementation="eager",
    )
    m = _LogitsWrapper(transformers.GPT2LMHeadModel(config)).eval()
    return m, (_ids(),)


def bert():
    """BERT encoder: 2 layers, d=64, 4 heads, ffn 128, vocab 256.

    Inputs: input_ids (2, 16) int64 and attention_mask (2, 16) int64, where the
    second sequence has its last 4 positions padded out.
    """
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    m = _BertWrapper(transformers.BertModel(config, add_pooling_layer=False)).eval()
    ids = _ids()
    mask = torch.ones(BATCH, SEQ_LEN, dtype=torch.long)
    mask[1, -4:] = 0
    return m, (ids, mask)


def llama():
    """Llama: 2 layers, d=64, 4 heads (2 KV heads, GQA), ffn 128, RMSNorm, RoPE,
    SwiGLU, vocab 256; input ids (2, 16) -> logits (2, 16, 256)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    m = _LogitsWrapper(transformers.LlamaForCausalLM(config)).eval()
    return m, (_ids(),)


def vit():
    """ViT classifier: 32x32 RGB image, patch 8 (16 patches + CLS), 2 layers,
    d=64, 4 heads, ffn 128, 10 classes; input (2, 3, 32, 32) -> logits (2, 10)."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=10,
        attn_implementation="eager",
    )
    m = _ImageLogitsWrapper(transformers.ViTForImageClassification(config)).eval()
    return m, (torch.randn(BATCH, 3, 32, 32),)


def resnet():
    """ResNet (basic blocks): embedding 16, stages [16, 32] with depths [1, 1],
    10 classes; input (2, 3, 32, 32) -> logits (2, 10). BatchNorm in eval mode."""
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        num_channels=3,
        embedding_size=16,
        hidden_sizes=[16, 32],
        depths=[1, 1],
        layer_type="basic",
        hidden_act="relu",
        num_labels=10,
    )
    hf = transformers.ResNetForImageClassification(config)
    # Give BatchNorm non-trivial running statistics so it is not an identity.
    with torch.no_grad():
        for mod in hf.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
    m = _ImageLogitsWrapper(hf).eval()
    return m, (torch.randn(BATCH, 3, 32, 32),)


ALL = {
    "gpt2": gpt2,
    "bert": bert,
    "llama": llama,
    "vit": vit,
    "resnet": resnet,
}


# -- the HF zoo: transformers architectures as their users call them ------------------------------------
#
# tests/models/test_hf_zoo.py compiles each entry for the default target and verifies it against eager
# PyTorch on the plan-executing runtime. Unlike the five models above, the decoders keep their default config:
# the KV cache is on, as `from_pretrained` leaves it, and each decoder also has a "-decode" entry: one token
# against a cache prefilled by running the model on a batch of left-padded prompts, the step `generate()` runs
# after the first.
# Attention is each model's default (sdpa where transformers has it). Configs are tiny (1 layer unless the
# architecture alternates layer kinds, hidden 32, sequence 8) and built from seeds: nothing is downloaded.

import inspect  # noqa: E402

HF_BATCH, HF_SEQ, HF_VOCAB = 2, 8, 128


def _hf_ids(seq: int = HF_SEQ) -> torch.Tensor:
    return torch.randint(0, HF_VOCAB, (HF_BATCH, seq), dtype=torch.long)


def _hf_mask() -> torch.Tensor:
    mask = torch.ones(HF_BATCH, HF_SEQ, dtype=torch.long)
    mask[1, -3:] = 0  # the second sequence is padded
    return mask


def _hf_image() -> torch.Tensor:
    return torch.randn(HF_BATCH, 3, 32, 32)


class OutputField(nn.Module):
    """forward(*tensors) -> one field of a transformers model's output; the tensors go in by keyword, in the
    order of ``keys``, and every other argument keeps its default (the cache on, for a decoder)."""

    def __init__(self, hf_model: nn.Module, keys, field: str):
        super().__init__()
        self.model, self.keys, self.field = hf_model, tuple(keys), field

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(**dict(zip(self.keys, tensors))), self.field)


def _cache_kwarg(hf_model: nn.Module) -> str:
    # transformers 5.x calls it `cache`; `past_key_values` is the older name
    return "cache" if "cache" in inspect.signature(hf_model.forward).parameters else "past_key_values"


class DecodeStep(nn.Module):
    """forward(input_ids (B, 1), attention_mask (B, T + 1), k_0, v_0, k_1, v_1, ...) -> logits (B, 1, V): one
    decode step against a KV cache of T positions given as tensors, the mask covering the cache and the new
    token, as `generate()` calls the model after the prompt. wafercc compiles functions of tensors, so the
    DynamicCache is built here, from the layers' keys and values."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.model = hf_model
        self.cache_kwarg = _cache_kwarg(hf_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor) -> torch.Tensor:
        cache = transformers.DynamicCache(ddp_cache_data=list(zip(past[0::2], past[1::2])), config=self.model.config)
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **{self.cache_kwarg: cache}).logits


def _left_padded_mask() -> torch.Tensor:
    mask = torch.ones(HF_BATCH, HF_SEQ, dtype=torch.long)
    mask[1, :3] = 0  # a batch of prompts of different lengths is padded on the left for generation
    return mask


def prefill(hf_model: nn.Module, prompt: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Run the model on the prompt with its cache on; the cache's keys and values, layer by layer."""
    with torch.no_grad():
        out = hf_model(input_ids=prompt, attention_mask=mask, use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    past = []
    for layer in cache.layers:
        past += [layer.keys.clone(), layer.values.clone()]
    return past


def _causal_lm(make, decode: bool = False):
    def build():
        cls, config = make()
        torch.manual_seed(0)
        hf = cls(config).eval()
        prompt = _hf_ids()
        if not decode:
            return OutputField(hf, ["input_ids"], "logits").eval(), (prompt,)
        mask = _left_padded_mask()
        past = prefill(hf, prompt, mask)
        step_mask = torch.cat([mask, torch.ones(HF_BATCH, 1, dtype=torch.long)], dim=1)
        return DecodeStep(hf).eval(), (_hf_ids(seq=1), step_mask, *past)

    return build


def _encoder(make, keys=("input_ids", "attention_mask"), field="last_hidden_state", inputs=None, part=None):
    """An encoder (``part`` picks the encoder out of an encoder-decoder) as OutputField; text models get
    input ids and a padding mask."""

    def build():
        cls, config = make()
        torch.manual_seed(0)
        hf = cls(config).eval()
        if part is not None:
            hf = part(hf)
        args = inputs() if inputs is not None else (_hf_ids(), _hf_mask())
        return OutputField(hf, keys, field).eval(), args

    return build


def _vision(make, field="last_hidden_state"):
    return _encoder(make, keys=["pixel_values"], field=field, inputs=lambda: (_hf_image(),))


_T, _V = transformers, HF_VOCAB
_LM = dict(
    vocab_size=_V,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
_ENC = dict(
    vocab_size=_V,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)
_VIT = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
)

# Decoder LMs: family -> () -> (model class, config). Ordered roughly by how much they are used.
DECODERS = {
    "gpt2": lambda: (
        _T.GPT2LMHeadModel,
        _T.GPT2Config(vocab_size=_V, n_positions=64, n_embd=32, n_layer=1, n_head=4, bos_token_id=0, eos_token_id=0),
    ),
    "llama": lambda: (_T.LlamaForCausalLM, _T.LlamaConfig(**_LM)),
    "mistral": lambda: (_T.MistralForCausalLM, _T.MistralConfig(**_LM)),
    "qwen2": lambda: (_T.Qwen2ForCausalLM, _T.Qwen2Config(**_LM)),
    "qwen3": lambda: (_T.Qwen3ForCausalLM, _T.Qwen3Config(**_LM, head_dim=8)),
    "gemma": lambda: (_T.GemmaForCausalLM, _T.GemmaConfig(**_LM, head_dim=8)),
    # two layers: one sliding-window (window 4, shorter than the prompt) and one global
    "gemma2": lambda: (
        _T.Gemma2ForCausalLM,
        _T.Gemma2Config(**{**_LM, "num_hidden_layers": 2}, head_dim=8, sliding_window=4),
    ),
    "phi": lambda: (_T.PhiForCausalLM, _T.PhiConfig(**_LM)),
    "phi3": lambda: (_T.Phi3ForCausalLM, _T.Phi3Config(**_LM, pad_token_id=0)),
    "opt": lambda: (
        _T.OPTForCausalLM,
        _T.OPTConfig(
            vocab_size=_V,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            max_position_embeddings=64,
            word_embed_proj_dim=32,
            pad_token_id=1,
        ),
    ),
    "gpt_neox": lambda: (
        _T.GPTNeoXForCausalLM,
        _T.GPTNeoXConfig(
            vocab_size=_V,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            max_position_embeddings=64,
        ),
    ),
    "falcon": lambda: (
        _T.FalconForCausalLM,
        _T.FalconConfig(vocab_size=_V, hidden_size=32, num_hidden_layers=1, num_attention_heads=4),
    ),
    "bloom": lambda: (_T.BloomForCausalLM, _T.BloomConfig(vocab_size=_V, hidden_size=32, n_layer=1, n_head=4)),
    "gptj": lambda: (
        _T.GPTJForCausalLM,
        _T.GPTJConfig(vocab_size=_V, n_embd=32, n_layer=1, n_head=4, rotary_dim=4, n_positions=64),
    ),
    # two layers: one global, one local (window 4)
    "gpt_neo": lambda: (
        _T.GPTNeoForCausalLM,
        _T.GPTNeoConfig(
            vocab_size=_V,
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            attention_types=[[["global", "local"], 1]],
            window_size=4,
            max_position_embeddings=64,
        ),
    ),
    "starcoder2": lambda: (_T.Starcoder2ForCausalLM, _T.Starcoder2Config(**_LM)),
    "gpt_bigcode": lambda: (
        _T.GPTBigCodeForCausalLM,
        _T.GPTBigCodeConfig(vocab_size=_V, n_embd=32, n_layer=1, n_head=4, n_positions=64),
    ),
    # mixtures of experts: transformers' default experts implementation, its grouped-matmul custom op
    "mixtral": lambda: (_T.MixtralForCausalLM, _T.MixtralConfig(**_LM, num_local_experts=4, num_experts_per_tok=2)),
    "qwen2_moe": lambda: (
        _T.Qwen2MoeForCausalLM,
        _T.Qwen2MoeConfig(
            **_LM, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32
        ),
    ),
}

# Decoders whose cache is not a key/value cache (a state-space model's): the default forward only.
STATE_DECODERS = {
    "mamba": lambda: (
        _T.MambaForCausalLM,
        _T.MambaConfig(vocab_size=_V, hidden_size=32, state_size=4, num_hidden_layers=1, expand=2, conv_kernel=4),
    ),
}

ENCODERS = {
    "bert": _encoder(lambda: (_T.BertModel, _T.BertConfig(**_ENC))),
    "roberta": _encoder(lambda: (_T.RobertaModel, _T.RobertaConfig(**_ENC, pad_token_id=1))),
    "xlm_roberta": _encoder(lambda: (_T.XLMRobertaModel, _T.XLMRobertaConfig(**_ENC, pad_token_id=1))),
    "distilbert": _encoder(
        lambda: (
            _T.DistilBertModel,
            _T.DistilBertConfig(
                vocab_size=_V, dim=32, n_layers=1, n_heads=4, hidden_dim=64, max_position_embeddings=64
            ),
        )
    ),
    "albert": _encoder(lambda: (_T.AlbertModel, _T.AlbertConfig(**_ENC, embedding_size=16))),
    "electra": _encoder(lambda: (_T.ElectraModel, _T.ElectraConfig(**_ENC, embedding_size=16))),
    "deberta_v2": _encoder(
        lambda: (
            _T.DebertaV2Model,
            _T.DebertaV2Config(
                **_ENC,
                relative_attention=True,
                position_buckets=16,
                max_relative_positions=32,
                pos_att_type=["p2c", "c2p"],
            ),
        )
    ),
    "mpnet": _encoder(lambda: (_T.MPNetModel, _T.MPNetConfig(**_ENC))),
    "t5_encoder": _encoder(
        lambda: (_T.T5EncoderModel, _T.T5Config(vocab_size=_V, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4))
    ),
    "bart_encoder": _encoder(
        lambda: (
            _T.BartModel,
            _T.BartConfig(
                vocab_size=_V,
                d_model=32,
                encoder_layers=1,
                decoder_layers=1,
                encoder_attention_heads=4,
                decoder_attention_heads=4,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                max_position_embeddings=64,
            ),
        ),
        part=lambda m: m.get_encoder(),
    ),
    "clip_text": _encoder(
        lambda: (
            _T.CLIPTextModel,
            _T.CLIPTextConfig(
                vocab_size=_V,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=4,
                max_position_embeddings=64,
                eos_token_id=2,
            ),
        )
    ),
    "vit": _vision(lambda: (_T.ViTModel, _T.ViTConfig(**_VIT))),
    "deit": _vision(lambda: (_T.DeiTModel, _T.DeiTConfig(**_VIT))),
    "dinov2": _vision(
        lambda: (
            _T.Dinov2Model,
            _T.Dinov2Config(
                image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, mlp_ratio=2
            ),
        )
    ),
    "beit": _vision(lambda: (_T.BeitModel, _T.BeitConfig(**_VIT, use_relative_position_bias=True))),
    "clip_vision": _vision(lambda: (_T.CLIPVisionModel, _T.CLIPVisionConfig(**_VIT))),
    "swin": _vision(
        lambda: (
            _T.SwinModel,
            _T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4),
        )
    ),
    "convnext": _vision(
        lambda: (_T.ConvNextModel, _T.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2))
    ),
    "resnet": _vision(
        lambda: (
            _T.ResNetModel,
            _T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"),
        )
    ),
    "mobilenet_v2": _vision(lambda: (_T.MobileNetV2Model, _T.MobileNetV2Config(image_size=32, depth_multiplier=0.25))),
    # semantic segmentation: the decode head upsamples bilinearly
    "segformer": _vision(
        lambda: (
            _T.SegformerForSemanticSegmentation,
            _T.SegformerConfig(
                num_encoder_blocks=2,
                depths=[1, 1],
                sr_ratios=[2, 1],
                hidden_sizes=[16, 32],
                num_attention_heads=[1, 2],
                decoder_hidden_size=32,
                num_labels=4,
                patch_sizes=[7, 3],
                strides=[4, 2],
                mlp_ratios=[2, 2],
            ),
        ),
        field="logits",
    ),
    "whisper_encoder": _encoder(
        lambda: (
            _T.WhisperModel,
            _T.WhisperConfig(
                vocab_size=_V,
                d_model=32,
                encoder_layers=1,
                decoder_layers=1,
                encoder_attention_heads=4,
                decoder_attention_heads=4,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                num_mel_bins=16,
                max_source_positions=16,
                max_target_positions=16,
                pad_token_id=0,
                bos_token_id=0,
                eos_token_id=0,
                decoder_start_token_id=0,
            ),
        ),
        keys=["input_features"],
        inputs=lambda: (torch.randn(HF_BATCH, 16, 32),),
        part=lambda m: m.get_encoder(),
    ),
    "wav2vec2": _encoder(
        lambda: (
            _T.Wav2Vec2Model,
            _T.Wav2Vec2Config(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=4,
                intermediate_size=64,
                conv_dim=(16, 16),
                conv_stride=(5, 2),
                conv_kernel=(10, 3),
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4,
            ),
        ),
        keys=["input_values"],
        inputs=lambda: (torch.randn(HF_BATCH, 400),),
    ),
}

# name -> builder, every entry of the zoo: "<family>" (default forward) and "<family>-decode".
HF_ZOO = {}
for _name, _make in DECODERS.items():
    HF_ZOO[_name] = _causal_lm(_make)
    HF_ZOO[_name + "-decode"] = _causal_lm(_make, decode=True)
for _name, _make in STATE_DECODERS.items():
    HF_ZOO[_name] = _causal_lm(_make)
HF_ZOO.update(ENCODERS)

# Architectures wafercc cannot compile, with the reason; each must fail with one clear error (exit 2 style
# WaferError, no traceback) that says it. name -> (builder, words the error must contain).
HF_EXPECTED_FAILURES = {
    # sliding-window attention asks `is_index_global_attn.flatten().any().item()` and branches on it
    "longformer": (
        _encoder(lambda: (_T.LongformerModel, _T.LongformerConfig(**_ENC, attention_window=4, pad_token_id=1))),
        ["data-dependent", "modeling_longformer.py:"],
    ),
    # the router converts its classifier with `self.classifier = self.classifier.to(self.dtype)` in forward,
    # which torch.export cannot trace
    "switch_transformers_encoder": (
        _encoder(
            lambda: (
                _T.SwitchTransformersEncoderModel,
                _T.SwitchTransformersConfig(
                    vocab_size=_V,
                    d_model=32,
                    d_kv=8,
                    d_ff=64,
                    num_layers=2,
                    num_sparse_encoder_layers=1,
                    num_heads=4,
                    num_experts=4,
                ),
            )
        ),
        ["modeling_switch_transformers.py:", "converts or moves one of its modules"],
    ),
}
