"""mllmcl: continual learning for multimodal LLMs with isolated LoRA experts and an MLLM router (MR-LoRA)."""

__version__ = "0.1.0"
