"""Any Hugging Face image-text-to-text model as the base, for real: tiny random models of seven architectures (built
from their config classes, offline) go through `base.name_or_path` with `auto` module settings and no architecture-
specific code outside mllmcl/model: each trains two experts and a router that learns its routes, answers a batch
that mixes a 64x64, a 64x32 and a 200x120 image with a text-only question, and is evaluated; a padded batch gives every example exactly
the loss it has alone (sequence-aligned inputs and positions right), and so does Qwen2-VL against its own forward."""

from __future__ import annotations

import math
import shutil

import pytest
from PIL import Image

from mllmcl.paths import ProjectPaths
from tests import toy
from tests.model.architectures import ARCHITECTURES, build

AUTO = {"target_modules": "auto", "language_model_scope": "auto", "modules_to_save": "auto"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("architectures")
    return {name: build(name, root / name) for name in ARCHITECTURES}


def _params(path):
    return toy.params(
        base={"build": "none", "name_or_path": str(path)},
        expert={"steps": 6, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 0, **AUTO},
        # 40 steps at lr 1e-2: every architecture's router loss falls from 3-5 to 0.26-0.59 in 1-5 s (2026-12-08)
        router={
            "steps": 40,
            "lr": 1e-2,
            "batch_size": 8,
            "warmup_steps": 2,
            "checkpoint_every": 0,
            "samples_per_task": 8,
            "base_samples": 4,
            "eval_samples_per_task": 2,
            **AUTO,
        },
    )


def _image(w, h, colour):
    return Image.new("RGB", (w, h), colour)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_an_architecture_trains_routes_predicts_and_evaluates(name, models, toy_root, tmp_path):
    from mllmcl.continual.evaluation import evaluate_system
    from mllmcl.continual.experts import train_expert
    from mllmcl.continual.inference import Request, RoutedModel
    from mllmcl.continual.router import train_router

    root = tmp_path / "proj"
    shutil.copytree(toy_root / "data", root / "data")
    paths, params = ProjectPaths(root), _params(models[name])
    for task in toy.TASKS:
        stats = train_expert(
            task,
            params,
            base_dir=paths.base,
            data_dir=paths.task_data(task),
            out_dir=paths.expert(task),
            progress=False,
        )
        assert stats.training.final_loss == stats.training.final_loss  # a number, not NaN
    router = train_router(
        list(toy.TASKS), params, base_dir=paths.base, tasks_dir=paths.tasks_dir, out_dir=paths.router, progress=False
    )
    # the router learned to tell its routes apart: its loss ends below what guessing among the three routes costs
    # (ln 3 = 1.10; a router that learned only the answer format, or the label prior, stays at or above it)
    assert router["final_loss"] < math.log(3) < router["first_loss"], (router["first_loss"], router["final_loss"])
    model = RoutedModel(str(models[name]), paths.experts, paths.router)
    requests = [
        Request("what colour is the square?", _image(64, 64, (200, 30, 30)), "a"),
        Request("is the square left or right?", _image(64, 32, (30, 200, 30)), "b"),
        Request("what colour is the square?", _image(200, 120, (30, 30, 200)), "c"),
        Request("what is the opposite of hot?", None, "d"),
    ]
    preds = model.predict(requests, batch_size=4)
    assert [p.id for p in preds] == ["a", "b", "c", "d"]
    assert all(isinstance(p.answer, str) and p.expert in {"colour", "where", "base"} for p in preds)
    result = evaluate_system(
        model,
        list(toy.TASKS),
        tasks_dir=paths.tasks_dir,
        predictions_dir=root / "predictions",
        experts_dir=paths.experts,
        max_per_task=4,
    )
    assert set(result.tasks) == set(toy.TASKS) and result.language is not None


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_padded_batch_gives_each_example_its_own_loss(name, models):
    """Left padding, sequence-aligned inputs (token_type_ids, mm_token_type_ids) and positions handled right: the
    per-example loss in a mixed batch equals the loss of the example alone, unpadded."""
    import torch

    from mllmcl.model.batching import add_positions, collate, encode
    from mllmcl.model.loading import Prompting, load_base

    model, processor = load_base(str(models[name]))
    prompting = Prompting.for_model(model, processor)
    items = [
        encode(prompting, "what colour is the square?", _image(64, 64, (200, 30, 30)), "red"),
        encode(prompting, "how many?", _image(64, 32, (30, 200, 30)), "one"),
        encode(prompting, "how many?", _image(200, 120, (30, 30, 200)), "two three"),
        encode(prompting, "is it?", None, "yes"),
    ]
    pad = prompting.tokenizer.pad_token_id

    def losses(batch):
        batch = add_positions(model, batch)
        logits = model(**batch).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        return (token.sum(1) / (labels != -100).sum(1)).tolist()

    with torch.no_grad():
        batched = losses(collate(items, pad))
        alone = [losses(collate([it], pad))[0] for it in items]
    assert batched == pytest.approx(alone, abs=1e-4)


def test_qwen2_vl_training_loss_equals_the_models_own_forward(models):
    """M-RoPE: the training path lets Qwen2-VL compute its own 3-D positions, so its loss is the model's own."""
    import torch

    from mllmcl.model.batching import add_positions, collate, encode
    from mllmcl.model.loading import Prompting, load_base

    model, processor = load_base(str(models["qwen2_vl"]))
    prompting = Prompting.for_model(model, processor)
    item = encode(prompting, "what colour is the square?", _image(64, 32, (200, 30, 30)), "red")
    batch = collate([item], prompting.tokenizer.pad_token_id)
    with torch.no_grad():
        ours = model(**add_positions(model, dict(batch))).loss
        own = model(**batch).loss
    assert "position_ids" not in add_positions(model, dict(batch))
    assert float(ours) == pytest.approx(float(own), abs=1e-6)


@pytest.mark.parametrize("damage", ["missing config", "corrupt weights", "remote code"])
def test_a_broken_model_folder_is_one_line_naming_it(models, tmp_path, damage, capsys):
    from mllmcl.cli.main import main

    folder = tmp_path / "model"
    shutil.copytree(models["llava"], folder)
    if damage == "missing config":
        (folder / "config.json").unlink()
    elif damage == "corrupt weights":
        weights = next(folder.glob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:200])
    else:
        import json

        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModelForImageTextToText": "modeling_custom.CustomModel"}
        config["model_type"] = "custom_unknown"
        (folder / "config.json").write_text(json.dumps(config))
    assert main(["base", "inspect", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(folder) in err and "Traceback" not in err


def test_base_inspect_prints_what_auto_resolves_to(models, capsys):
    from mllmcl.cli.main import main

    assert main(["base", "inspect", str(models["idefics3"])]) == 0
    out = capsys.readouterr().out
    assert "language_model_scope: text_model" in out and "projector: connector" in out
    assert main(["base", "inspect", str(models["qwen2_vl"])]) == 0
    out = capsys.readouterr().out
    assert "projector: merger" in out and "own positions: yes" in out and "without its video processor" in out


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_image_embeddings_without_the_decoder_equal_the_full_forwards(name, models):
    """The open set and drift read the decoder's input embeddings; stopping the forward at the decoder (what makes
    fitting the open set cheap) gives exactly the full pass's hidden_states[0]."""
    import torch

    from mllmcl.model.batching import add_positions, collate, encode
    from mllmcl.model.embeddings import decoder_input_embeddings
    from mllmcl.model.loading import Prompting, load_base

    model, processor = load_base(str(models[name]))
    prompting = Prompting.for_model(model, processor)
    items = [encode(prompting, "what is it?", _image(64, 64, (200, 30, 30))), encode(prompting, "and this?", None)]
    batch = add_positions(model, collate(items, prompting.tokenizer.pad_token_id))
    batch.pop("labels", None)
    decoder_runs = []
    model.get_decoder().register_forward_hook(lambda *_: decoder_runs.append(1))
    with torch.no_grad():
        full = model(**batch, output_hidden_states=True).hidden_states[0]
        early = decoder_input_embeddings(model, batch)
    assert torch.equal(early, full)
    assert len(decoder_runs) == 1, "the decoder ran for the embeddings too"


# the architectures whose split pass (shared prefix cache + own suffix) reproduces the full pass; the others train on
# full sequences (Qwen2-VL derives its own 3-D positions; PaliGemma puts the image before any text, so prompts share
# no prefix). A change that silently drops one of these from sharing fails here.
SHARES_PREFIX = {"llava", "llava_next", "idefics3", "gemma3", "internvl"}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_shared_prompt_prefix_trains_exactly_as_full_sequences(name, models):
    """The router's pool of experts opens every prompt: where the plan shares it, the loss and every gradient equal
    those of full, padded sequences; elsewhere the plan says why not."""

    from mllmcl.model.adapters import new_adapter
    from mllmcl.model.batching import encode
    from mllmcl.model.loading import Prompting, load_base
    from mllmcl.model.prefix import full_loss, plan, split_loss

    model, processor = load_base(str(models[name]))
    prompting = Prompting.for_model(model, processor)
    pool = "Models: " + " ; ".join(f"{c}: images of kind {c.lower()} with shapes and colours" for c in "ABCDE") + " ."
    items = [
        encode(prompting, "what colour is the square?", _image(64, 64, (200, 30, 30)), "A", prefix=pool),
        encode(prompting, "how many?", _image(64, 32, (30, 200, 30)), "B", prefix=pool),
        encode(prompting, "how many?", _image(200, 120, (30, 30, 200)), "C", prefix=pool),
        encode(prompting, "is it?", None, "Z", prefix=pool),
    ]
    pad = prompting.tokenizer.pad_token_id
    peft_model = new_adapter(model, _lora(model), seed=0)
    shared = plan(peft_model, items, pad, sample=items)
    assert (shared.tokens > 0) == (name in SHARES_PREFIX), shared.reason
    if not shared.tokens:
        assert shared.reason
        return
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    grads = []
    for loss_of in (
        lambda: full_loss(peft_model, items, pad),
        lambda: split_loss(peft_model, items, shared.tokens, pad),
    ):
        peft_model.zero_grad()
        loss = loss_of()
        loss.backward()
        grads.append((float(loss), [p.grad.clone() for p in trainable]))
    (full, g_full), (split, g_split) = grads
    assert split == pytest.approx(full, rel=1e-5)
    assert max(float((a - b).abs().max()) for a, b in zip(g_full, g_split)) <= 1e-4 * max(
        float(a.abs().max()) for a in g_full
    )


def _lora(model):
    from mllmcl.config import RouterConfig
    from mllmcl.model.adapters import lora_config

    return lora_config(RouterConfig(**AUTO), model, role="router")
