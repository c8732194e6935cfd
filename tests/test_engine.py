"""The one training loop: recipes, schedules, determinism, and that it really learns."""

from __future__ import annotations

import pytest
import torch

from perlkit.backbone import FrozenCLIP
from perlkit.engine import TrainConfig, _lr_factor, evaluate, recipe, train
from perlkit.methods import build_method, get_method_class


def test_unified_protocol_forces_one_epoch_and_drops_epoch_warmup() -> None:
    mmrl = get_method_class("mmrl")
    own, unified = recipe(mmrl, "default"), recipe(mmrl, "unified")
    assert own.epochs > 1 and own.warmup_epochs == 1
    assert unified.epochs == 1 and unified.warmup_epochs == 0 and unified.lr == own.lr
    assert recipe(get_method_class("perl"), "unified") == TrainConfig()
    with pytest.raises(ValueError, match="unknown recipe key"):
        recipe(mmrl, "unified", learning_rate=1.0)
    with pytest.raises(ValueError, match="protocol"):
        recipe(mmrl, "fast")


def test_schedules() -> None:
    cfg = TrainConfig(scheduler="cosine", warmup_factor=0.01)
    assert _lr_factor(0, 100, 10, cfg) == 0.01
    assert _lr_factor(10, 100, 10, cfg) == pytest.approx(1.0)
    assert _lr_factor(100, 100, 10, cfg) == pytest.approx(0.0, abs=1e-9)
    assert _lr_factor(5, 100, 0, TrainConfig()) == 1.0


def _batches(images: torch.Tensor, labels: torch.Tensor):
    return lambda epoch: [(images[:2], labels[:2]), (images[2:], labels[2:])]


def test_train_is_deterministic_and_learns(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    images, labels, prompts = tiny_batch
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        perl = build_method("perl", tiny_backbone, steps=2)
        history = train(perl, _batches(images, labels), perl.class_set(prompts),
                        TrainConfig(epochs=15, lr=5e-2, seed=3), progress=False)
        runs.append([s["loss"] for s in history.steps])
    assert runs[0] == runs[1]
    assert len(runs[0]) == 30
    assert runs[0][-2] < runs[0][0] and runs[0][-1] < runs[0][1]  # each of the two batches is fitted better
    classes = perl.class_set(prompts)
    result = evaluate(perl, [(images, labels)], classes, progress=False)
    assert result.total == 4 and 0.0 <= result.accuracy <= 100.0


def test_nothing_to_train_for_zeroshot(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    images, labels, prompts = tiny_batch
    zs = build_method("zeroshot", tiny_backbone)
    history = train(zs, _batches(images, labels), zs.class_set(prompts), TrainConfig(), progress=False)
    assert history.steps == [] and history.images == 0


def test_max_steps_caps_training(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    images, labels, prompts = tiny_batch
    perl = build_method("perl", tiny_backbone, steps=1)
    history = train(perl, _batches(images, labels), perl.class_set(prompts), TrainConfig(epochs=5, max_steps=3),
                    progress=False)
    assert len(history.steps) == 3

