"""Tiny random Qwen2-VL (ViT with 2x2 patch merger + Qwen2 decoder with M-RoPE); writes models/qwen2_vl.

Tiny rules: text head_dim/2 == sum(mrope_section) (hidden 64 / 2 heads = 32 -> 16 = 4+6+6); vision
hidden_size (merger output) == text hidden_size; the image processor's patch_size / merge_size /
temporal_patch_size equal the vision config's; min/max pixels bound the grid (64x64 -> 8x8 patches -> 16 tokens).
No video processor is attached (Qwen2VLVideoProcessor needs torchvision)."""

from mllmcl.model.loading import video_processor_optional
from tests.model.architectures.common import seed_all, tiny_tokenizer

NAME = "qwen2_vl"
PATCH, MERGE, TEMPORAL = 8, 2, 2
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def build():
    seed_all()
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = tiny_tokenizer(
        SPECIAL,
        {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        pad="<|endoftext|>",
        bos=None,
        eos="<|im_end|>",
        unk=None,
    )
    ids = tok.convert_tokens_to_ids
    vision = dict(
        depth=1,
        embed_dim=32,
        hidden_size=64,
        num_heads=2,
        mlp_ratio=2,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        temporal_patch_size=TEMPORAL,
    )
    text = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )
    config = Qwen2VLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    model = Qwen2VLForConditionalGeneration(config)
    factor = PATCH * MERGE
    ip = Qwen2VLImageProcessorPil(
        size={"shortest_edge": factor * factor, "longest_edge": 64 * 64},
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=TEMPORAL,
    )
    with video_processor_optional():
        processor = Qwen2VLProcessor(
            image_processor=ip, tokenizer=tok, video_processor=None, chat_template=CHAT_TEMPLATE
        )
    return model, processor
