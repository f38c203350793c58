"""Build the embedded tiny LLaVA-architecture base from transformers configs, so the whole pipeline runs
offline on a CPU through exactly the code path a real hub model takes (AutoModelForImageTextToText +
AutoProcessor). Nothing here is used once the base is saved: every later load is generic."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mllmcl.config.schema import TinyConfig

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\\n' }}"
    "{% elif message['role'] == 'assistant' %}ASSISTANT:"
    "{% if message['content'] is string %} {{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %} {{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}</s>{{ '\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE: learns whole-word tokens for the benchmark's vocabulary yet still encodes ANY text
    (unseen words fall back to bytes), which real imported data needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
    )


def build_tiny_llava(cfg: TinyConfig, tokenizer):
    """A LLaVA model from configs: CLIP vision tower -> MLP projector -> Llama decoder."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    v, t = cfg.vision, cfg.text
    image_size, patch = cfg.image_size, v.patch_size
    vision = CLIPVisionConfig(
        hidden_size=v.hidden_size,
        intermediate_size=v.hidden_size * 4,
        num_hidden_layers=v.layers,
        num_attention_heads=v.heads,
        image_size=image_size,
        patch_size=patch,
        projection_dim=v.hidden_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.layers,
        num_attention_heads=t.heads,
        num_key_value_heads=t.heads,
        max_position_embeddings=t.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=v.feature_layer,
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )
    return LlavaForConditionalGeneration(config)


def build_processor(tokenizer, image_size: int, patch_size: int):
    """A LlavaProcessor for the tiny base: CLIP-style resize and centre crop to `image_size`, the embedded
    USER:/ASSISTANT: chat template, `<image>` as image token."""
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
    )


def save_base(model, processor, out_dir: Path) -> None:
    """Weights (safetensors only) and processor files into `out_dir`; not atomic, so the caller writes to a temporary
    folder first."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
