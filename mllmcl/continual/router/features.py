"""The base's own features of a request, which no adapter trains: the image's embedding (the projector's output,
pooled over the image tokens, read off the decoder's input without running the decoder) and the question's (its
mean token embedding). The open-set profiles and the prototype router are built on these."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

from mllmcl.continual.open_set import compact
from mllmcl.model.batching import collate, encode
from mllmcl.model.embeddings import decoder_input_embeddings, image_token_id, pooled_image_embeddings
from mllmcl.model.loading import Prompting


class BaseFeatures:
    """Features of requests under the plain base, whatever adapters `model` holds (they are switched off)."""

    def __init__(self, model, prompting: Prompting):
        self.model, self.prompting = model, prompting
        self.image_token = image_token_id(model)

    def _plain(self):
        """The base alone: a PeftModel's adapters off (an expert may train its own projector), else nothing to do."""
        return self.model.disable_adapter() if hasattr(self.model, "disable_adapter") else nullcontext()

    def image_embeddings(self, requests: Sequence[tuple[object, str]], *, batch_size: int = 64, encoded=None) -> list:
        """Compact image embedding of each (image, question) request, None for a text-only one: the vision tower and
        projector run, the decoder does not. `encoded`: the requests already through the processor."""
        import torch

        device = next(self.model.parameters()).device
        pad = self.prompting.tokenizer.pad_token_id
        out: list = []
        with torch.inference_mode(), self._plain():
            for start in range(0, len(requests), batch_size):
                chunk = requests[start : start + batch_size]
                items = encoded[start : start + batch_size] if encoded is not None else None
                batch = collate(items or [encode(self.prompting, q, image) for image, q in chunk], pad)
                batch.pop("labels")
                batch = {k: v.to(device) for k, v in batch.items()}
                hidden = decoder_input_embeddings(self.model, batch)
                for e in pooled_image_embeddings(hidden, batch["input_ids"], self.image_token):
                    out.append(None if e is None else compact(e[None, :])[0])
        return out

    def question_embeddings(self, questions: Sequence[str]):
        """(n, dim) compact mean token embedding of each question."""
        from mllmcl.model.embeddings import question_embeddings

        return compact(question_embeddings(self.model, self.prompting.tokenizer, list(questions)))
