"""The router's decision on generated tokens, without a model: a legal letter with enough confidence picks its
expert; a low confidence, an illegal letter or no letter at all falls back to the base model (open set); and a
text-only request can skip the router entirely."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mllmcl.continual.router import BASE, BASE_LETTER, Route, Router, build_pool
from mllmcl.continual.router import mllm as router_module

TASKS = ["rs", "med", "ad"]
# token id -> text, as a BPE tokenizer would decode each id alone
VOCAB = {0: "<eos>", 1: " A", 2: " B", 3: " C", 4: " Z", 5: " Q", 6: "Apple", 7: " the", 8: "A", 9: "<pad>"}
SPECIAL = {0, 9}


class FakeTokenizer:
    pad_token_id = 9
    eos_token_id = 0

    def __init__(self):
        self.calls: list[list[int]] = []

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        self.calls.append(ids)
        return "".join(VOCAB[i] for i in ids if not (skip_special_tokens and i in SPECIAL))


class ExplodingModel:
    """A model that must not be used."""

    def set_adapter(self, name):
        raise AssertionError("the router model was asked")

    def generate(self, **kwargs):
        raise AssertionError("the router model was asked")

    def parameters(self):
        raise AssertionError("the router model was asked")


def make_router(model=None, *, min_confidence: float = 0.5, text_only_to_base: bool = False) -> Router:
    pool = build_pool(TASKS, Path("/nonexistent"))  # no meta.json: descriptions fall back to task names
    prompting = SimpleNamespace(tokenizer=FakeTokenizer())
    return Router(
        model or ExplodingModel(),
        prompting,
        pool,
        min_confidence=min_confidence,
        text_only_to_base=text_only_to_base,
    )


def probs_for(steps: list[list[tuple[int, float]]], batch: int = 1) -> list[torch.Tensor]:
    """One [batch, vocab] probability tensor per generated step; row 0 gets the given (token, p) pairs."""
    out = []
    for pairs in steps:
        p = torch.zeros(batch, len(VOCAB))
        for token, value in pairs:
            p[0, token] = value
        out.append(p)
    return out


def decide(router: Router, tokens: list[int], probs: list[torch.Tensor], row: int = 0) -> Route:
    return router._decide(torch.tensor(tokens), probs, row, set(router.by_letter))


def test_the_pool_gives_letters_in_task_order_and_z_to_the_base():
    pool = build_pool(TASKS, Path("/nonexistent"))
    assert [(e.letter, e.task) for e in pool] == [("A", "rs"), ("B", "med"), ("C", "ad"), (BASE_LETTER, BASE)]


def test_a_confident_legal_letter_routes_to_its_expert():
    route = decide(make_router(), [2, 0], probs_for([[(2, 0.9)], [(0, 0.99)]]))
    assert route.task == "med" and route.letter == "B"
    assert route.confidence == pytest.approx(0.9)
    assert route.raw == " B"


def test_the_base_letter_routes_to_the_base():
    route = decide(make_router(), [4, 0], probs_for([[(4, 0.8)], [(0, 1.0)]]))
    assert (route.task, route.letter) == (BASE, BASE_LETTER)


def test_a_legal_letter_below_min_confidence_goes_to_base_but_keeps_the_letter():
    route = decide(make_router(min_confidence=0.5), [1, 0], probs_for([[(1, 0.3)], [(0, 1.0)]]))
    assert route.task == BASE
    assert route.letter == "A"
    assert route.confidence == pytest.approx(0.3)


def test_min_confidence_is_inclusive():
    route = decide(make_router(min_confidence=0.5), [1], probs_for([[(1, 0.5)]]))
    assert route.task == "rs"


def test_an_illegal_letter_goes_to_base_with_zero_confidence():
    route = decide(make_router(), [5, 0], probs_for([[(5, 0.99)], [(0, 1.0)]]))
    assert route == Route(BASE, None, 0.0, " Q", known=False)  # the open set: flagged unknown


def test_a_capital_inside_a_word_is_not_a_letter():
    route = decide(make_router(), [6, 0], probs_for([[(6, 0.99)], [(0, 1.0)]]))
    assert route.task == BASE and route.letter is None and route.confidence == 0.0
    assert route.raw == "Apple"


def test_no_letter_at_all_goes_to_base():
    route = decide(make_router(), [7, 7, 0], probs_for([[(7, 0.9)], [(7, 0.9)], [(0, 1.0)]]))
    assert route == Route(BASE, None, 0.0, " the the", known=False)


def test_the_first_legal_letter_wins_and_its_own_step_gives_the_confidence():
    # " the", then "A" (p 0.7 at step 1), then " C" (p 0.95 at step 2): A wins with step 1's probability
    probs = probs_for([[(7, 0.9)], [(8, 0.7)], [(3, 0.95)]])
    route = decide(make_router(), [7, 8, 3], probs)
    assert (route.task, route.letter) == ("rs", "A")
    assert route.confidence == pytest.approx(0.7)


def test_the_confidence_is_read_from_the_requests_own_row():
    probs = [torch.zeros(2, len(VOCAB))]
    probs[0][0, 3] = 0.1  # row 0 is another request
    probs[0][1, 3] = 0.9
    route = decide(make_router(), [3], probs, row=1)
    assert route.task == "ad" and route.confidence == pytest.approx(0.9)


def test_a_letter_of_no_expert_in_the_pool_is_illegal():
    # with one task, the pool is A and Z: B is not legal and must not route anywhere
    router = Router(
        ExplodingModel(), SimpleNamespace(tokenizer=FakeTokenizer()), build_pool(["rs"], Path("/nonexistent"))
    )
    route = decide(router, [2], probs_for([[(2, 0.99)]]))
    assert route.task == BASE and route.letter is None


# --- route(): the text-only shortcut and the mapping of batched answers back to requests ---------------------
IMAGE = object()  # the router never looks inside the image here: encoding is replaced


def test_text_only_requests_go_to_base_without_asking_the_model():
    router = make_router(ExplodingModel(), text_only_to_base=True)
    routes = router.route([(None, "what is 2+2?"), (None, "spell cat")])
    assert [r.task for r in routes] == [BASE, BASE]
    assert all(r.letter is None and r.confidence == 1.0 for r in routes)


def test_without_the_shortcut_a_text_only_request_is_asked_to_the_router():
    router = make_router(ExplodingModel(), text_only_to_base=False)
    with pytest.raises(AssertionError, match="router model was asked"):
        router.route([(None, "what is 2+2?")])


class ScriptedModel:
    """Answers each request with the letters scripted for its question, with probability 0.9."""

    def __init__(self, answers: dict[str, int]):
        self.answers = answers
        self.asked: list[list[str]] = []
        self.adapters: list[str] = []
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def set_adapter(self, name):
        self.adapters.append(name)

    def parameters(self):
        yield self.weight

    def generate(self, input_ids, max_new_tokens, **kwargs):
        questions = [QUESTIONS[int(i)] for i in input_ids[:, 0]]
        self.asked.append(questions)
        tokens = torch.tensor([[self.answers[q], 0] for q in questions])
        scores = []
        for step in range(tokens.shape[1]):
            logits = torch.full((len(questions), len(VOCAB)), -10.0)
            for row in range(len(questions)):
                logits[row, tokens[row, step]] = 10.0
            scores.append(logits)
        hidden = ((torch.zeros(input_ids.shape[0], input_ids.shape[1], 4),),)  # step 0, embedding layer
        return SimpleNamespace(
            sequences=torch.cat([input_ids, tokens], dim=1), scores=tuple(scores), hidden_states=hidden
        )


QUESTIONS = ["rs question", "text question", "ad question", "odd question"]


def test_route_maps_each_answer_back_to_its_request(monkeypatch):
    class NoEncodeRouter(Router):
        def encode(self, image, question):
            return QUESTIONS.index(question)

    def collate(items, pad_id):
        ids = torch.tensor([[i, 1, 1] for i in items])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    monkeypatch.setattr(router_module, "collate", collate)
    model = ScriptedModel({"rs question": 1, "ad question": 3, "odd question": 5})
    router = NoEncodeRouter(
        model,
        SimpleNamespace(tokenizer=FakeTokenizer()),
        build_pool(TASKS, Path("/nonexistent")),
        text_only_to_base=True,
    )
    requests = [(IMAGE, "rs question"), (None, "text question"), (IMAGE, "ad question"), (IMAGE, "odd question")]
    routes = router.route(requests, batch_size=2)
    assert [r.task for r in routes] == ["rs", BASE, "ad", BASE]
    assert [r.letter for r in routes] == ["A", None, "C", None]
    assert [r.known for r in routes] == [True, True, True, False]  # "odd" answered an illegal letter
    assert routes[0].confidence > 0.99
    # the text-only request never reached the model; the others in batches of at most 2, with the router adapter
    assert model.asked == [["rs question", "ad question"], ["odd question"]]
    assert set(model.adapters) == {"router"}
