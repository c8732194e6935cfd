"""Training pinned to recorded numbers: a few optimiser steps of every method on tiny-clip from a fixed seed give
exactly the losses and logits recorded in ``regression_numbers.json``.

Shape tests pass when PERL's anchor loss is zeroed, the injected token's sign is flipped, only the newest thought
token is kept, or evaluation uses the zero-shot image embedding; these numbers do not. After a change that is meant
to move numbers, re-record with ``python tests/test_regression.py --record`` and say why in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from perlkit.backbone import create_backbone
from perlkit.engine import recipe, seed_everything, train
from perlkit.methods import build_method, list_methods

RECORD = Path(__file__).with_name("regression_numbers.json")
#: the cases: every registered method with its defaults, plus PERL with K=2 (the token list) and vision only
CASES = {name: (name, {}) for name in list_methods()} | {
    "perl-k2": ("perl", {"steps": 2}),
    "perl-vision": ("perl", {"modalities": "vision"}),
}


def run_case(method: str, options: dict) -> dict[str, list[float]]:
    """Three optimiser steps under the method's own unified-protocol optimiser at a learning rate that moves it."""
    torch.set_num_threads(1)
    backbone = create_backbone("tiny-clip", None)
    gen = torch.Generator().manual_seed(7)
    images = torch.randn(6, 3, 32, 32, generator=gen)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    prompts = ["a photo of a red circle.", "a photo of a blue square.", "a photo of a green star."]
    seed_everything(1)
    model = build_method(method, backbone, **options)
    classes = model.class_set(prompts)
    cfg = recipe(model, "unified", seed=1, lr=5e-2, max_steps=3, epochs=1, batch_size=2)
    batches = [(images[i:i + 2], labels[i:i + 2]) for i in range(0, 6, 2)]
    history = train(model, lambda epoch: batches, classes, cfg, progress=False)
    with torch.no_grad():
        logits = model.logits(images, model.classifier(classes, "base"))
    losses = [step["loss"] for step in history.steps]
    return {"losses": losses, "logits": [round(v, 7) for v in logits.flatten().tolist()]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_matches_recorded_numbers(case: str) -> None:
    recorded = json.loads(RECORD.read_text())[case]
    got = run_case(*CASES[case])
    # float32 CPU kernels differ across machines in the last digits: MMRL's third loss moved by 1.2e-5 relative on
    # another 2-core AMD EPYC box with the same code and torch; the mutations this guards against move them by far more
    assert got["losses"] == pytest.approx(recorded["losses"], rel=1e-4, abs=1e-5)
    assert got["logits"] == pytest.approx(recorded["logits"], rel=1e-4, abs=1e-4)
    if CASES[case][0] != "zeroshot":
        assert len(got["losses"]) == 3 and len(set(got["logits"])) > 1


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    numbers = {case: run_case(*CASES[case]) for case in sorted(CASES)}
    RECORD.write_text(json.dumps(numbers, indent=1) + "\n")
    print(f"recorded {len(numbers)} cases in {RECORD}")
