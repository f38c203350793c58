"""Tiny random Gemma 3 (SigLIP vision + avg-pool/soft-emb projector + Gemma3 text with sliding/full layers);
writes models/gemma3.

Tiny rules: mm_tokens_per_image is a square whose side divides the vision patch grid
((32 / 8 = 4 patches per side) / sqrt(4) = 2 -> 2x2 average pool); processor image_seq_length == mm_tokens_per_image;
image processor size == vision image_size; the tokenizer knows boi_token/eoi_token/image_token (the processor reads
tokenizer.boi_token, .eoi_token, .image_token) and the config's boi/eoi/image indices are their ids."""

from tests.model.architectures.common import seed_all, tiny_tokenizer

NAME = "gemma3"
IMAGE_SIZE, PATCH, MM_TOKENS = 32, 8, 4
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
SPECIAL = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]


def build():
    seed_all()
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tok = tiny_tokenizer(
        SPECIAL,
        {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
        pad="<pad>",
        bos="<bos>",
        eos="<eos>",
        unk="<unk>",
    )
    ids = tok.convert_tokens_to_ids
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        vision_use_head=False,
    )
    text = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=512,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=MM_TOKENS,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config)
    ip = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Gemma3Processor(
        image_processor=ip, tokenizer=tok, chat_template=CHAT_TEMPLATE, image_seq_length=MM_TOKENS
    )
    return model, processor
