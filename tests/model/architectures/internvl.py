"""Tiny random InternVL (InternViT + pixel-shuffle MLP projector + Qwen2), dynamic tiling on; writes models/internvl.

Tiny rules: processor image_seq_length == config.image_seq_length == (image_size // patch_size)**2 * downsample_ratio**2
(32/8 -> 16 * 0.25 = 4 tokens per tile); image processor size == vision image_size; crop_to_patches with
max_patches=4 gives up to 4 tiles + a thumbnail. The tokenizer must expose start_image_token (<img>),
end_image_token (</img>), context_image_token (<IMG_CONTEXT>) and video_token (<video>) as named special tokens.
No video processor is attached (InternVLVideoProcessor needs torchvision)."""

from mllmcl.model.loading import video_processor_optional
from tests.model.architectures.common import seed_all, tiny_tokenizer

NAME = "internvl"
IMAGE_SIZE, PATCH, DOWNSAMPLE = 32, 8, 0.5
SEQ = int((IMAGE_SIZE // PATCH) ** 2 * DOWNSAMPLE**2)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<IMG_CONTEXT>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]


def build():
    seed_all()
    from transformers import (
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    tok = tiny_tokenizer(
        SPECIAL,
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
        pad="<|endoftext|>",
        bos=None,
        eos="<|im_end|>",
        unk=None,
    )
    vision = InternVLVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    text = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.context_image_token_id,
        image_seq_length=SEQ,
        downsample_ratio=DOWNSAMPLE,
    )
    model = InternVLForConditionalGeneration(config)
    ip = GotOcr2ImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, crop_to_patches=True, min_patches=1, max_patches=4
    )
    with video_processor_optional():
        processor = InternVLProcessor(
            image_processor=ip, tokenizer=tok, video_processor=None, image_seq_length=SEQ, chat_template=CHAT_TEMPLATE
        )
    return model, processor
