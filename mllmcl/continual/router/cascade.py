"""The cascade: the prototype router decides where its posterior is clear (at least `routing.cascade_confidence`),
and only the remaining requests, and the text-only ones, pay a pass of the MLLM router. `asked` and `routed` count
what reached the MLLM router, so evaluation and serving can report the share."""

from __future__ import annotations

from collections.abc import Sequence

from mllmcl.continual.router.mllm import Router
from mllmcl.continual.router.pool import Route
from mllmcl.continual.router.prototype import PrototypeRouter


class CascadeRouter:
    """Prototype first, MLLM router where the prototype is unsure."""

    kind = "cascade"

    def __init__(self, prototype: PrototypeRouter, mllm: Router, *, confidence: float = 0.9):
        self.prototype, self.mllm, self.confidence = prototype, mllm, confidence
        self.pool = mllm.pool
        self.asked = self.routed = 0

    def unsure(self, requests: Sequence[tuple[object, str]], routes: Sequence[Route]) -> list[int]:
        """Which requests go on to the MLLM router: text-only ones (unless routing sends them to base) and image
        requests whose prototype posterior is below the cascade's confidence."""
        out = []
        for i, ((image, _), route) in enumerate(zip(requests, routes)):
            if image is None:
                if not self.mllm.text_only_to_base:
                    out.append(i)
            elif route.confidence < self.confidence:
                out.append(i)
        return out

    def route(self, requests: Sequence[tuple[object, str]], *, batch_size: int = 64, encoded=None) -> list[Route]:
        """The prototype's routes, the MLLM router's where the prototype is unsure."""
        routes = self.prototype.route(requests, batch_size=batch_size, encoded=encoded)
        ask = self.unsure(requests, routes)
        if ask:
            for i, route in zip(ask, self.mllm.route([requests[i] for i in ask], batch_size=batch_size)):
                routes[i] = Route(**{**route.__dict__, "by": "mllm"})
        self.asked += len(ask)
        self.routed += len(requests)
        return routes
