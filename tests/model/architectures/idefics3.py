"""Tiny random Idefics3 (SigLIP-like vision + pixel-shuffle connector + Llama), with image splitting (models/idefics3)
and without (models/idefics3_nosplit).

Tiny rules: processor image_seq_len == (vision image_size // patch_size)**2 // scale_factor**2 (32/8 -> 16 / 4 = 4);
image processor max_image_size.longest_edge == vision image_size (one tile); size.longest_edge a multiple of it
(2 * 32: at most 2x2 tiles + the global image); the tokenizer already holds <fake_token_around_image>, <image>,
<end_of_utterance>, <global-img> and <row_i_col_j> (i, j in 1..6) so the processor adds nothing."""

from tests.model.architectures.common import seed_all, tiny_tokenizer

NAME = "idefics3"
IMAGE_SIZE, PATCH, SCALE = 32, 8, 2
CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}<image>{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
SPECIAL = ["<|begin_of_text|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
]


def build(split: bool = True):
    seed_all()
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tok = tiny_tokenizer(
        SPECIAL, {"image_token": "<image>"}, pad="<pad>", bos="<|begin_of_text|>", eos="<end_of_utterance>", unk="<unk>"
    )
    vision = Idefics3VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=text,
        scale_factor=SCALE,
        image_token_id=tok.image_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = Idefics3ForConditionalGeneration(config)
    ip = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE}, do_image_splitting=split
    )
    seq = (IMAGE_SIZE // PATCH) ** 2 // SCALE**2
    n0 = len(tok)
    processor = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=CHAT_TEMPLATE)
    assert len(processor.tokenizer) == n0, "the processor added tokens the model does not have"
    return model, processor
