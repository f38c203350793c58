"""Tiny random PaliGemma (SigLIP vision + linear projector + Gemma, prefix-LM attention); writes models/paligemma.

Tiny rules: the image processor must carry image_seq_length == (vision image_size // patch_size)**2 (32/8 -> 16; the
config derives text_config.num_image_tokens the same way); the processor always adds 1024 <locNNNN> + 128 <segNNN>
tokens to the tokenizer, so the text vocab_size is taken AFTER building the processor (~1560); projection_dim ==
text hidden_size. Real PaliGemma has no chat template: this one puts <image> first and the text after it (the
processor itself inserts <bos> after the last <image> and appends "\\n")."""

from tests.model.architectures.common import seed_all, tiny_tokenizer

NAME = "paligemma"
IMAGE_SIZE, PATCH = 32, 8
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{% endif %}{% endfor %}"
)


def build():
    seed_all()
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipVisionConfig,
    )
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = tiny_tokenizer(["<image>"], {"image_token": "<image>"}, pad="<pad>", bos="<bos>", eos="<eos>", unk="<unk>")
    seq = (IMAGE_SIZE // PATCH) ** 2
    ip = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    ip.image_seq_length = seq
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    tok = processor.tokenizer
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    text = GemmaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.image_token_id,
        projection_dim=32,
        hidden_size=32,
        vocab_size=len(tok),
    )
    model = PaliGemmaForConditionalGeneration(config)
    return model, processor
