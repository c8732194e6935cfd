"""Which attribute of a mini benchmark's classes a frozen mini CLIP misses: the tool behind a world's design.

A mini class is a combination of attributes (a car's cabin, trim and spoiler; a scene's time, ground and landmark).
When zero-shot or a few-shot probe falls short, the question is which attribute the features or the prompts do not
carry. This renders base-class images with the world's *current* code (so a design edit can be judged on a frozen
model before any pretraining), encodes them, and reports how often the zero-shot prediction and the nearest class
mean of the training images share each attribute with the true class, with the per-attribute confusion matrix.

The frozen model saw only the images of its own design: a change of size or contrast is judged fairly, a feature
it never saw (a new mark on an object) is not. Numbers are mini-world diagnostics, never results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F

from perlkit.backbone import create_backbone
from perlkit.data.loading import build_transform
from perlkit.experiments.calibration import base_class_count
from perlkit.mini.weights import MINI_MODEL, mini_weights_path
from perlkit.mini.worlds import DEFAULT_WORLD, get_world

TRAIN_SPLIT, TEST_SPLIT = 0, 2  # render_bench_image's split index: train, val, test


@dataclass(frozen=True)
class AttributeReport:
    """One benchmark's diagnosis: overall accuracies, per-attribute agreement and per-attribute confusion."""

    dataset: str
    classes: int
    test_images: int
    zeroshot: float
    class_mean: float
    agreement: pd.DataFrame  # index: attribute; columns: zero-shot, class mean (% of test images sharing it)
    confusion: dict[str, pd.DataFrame]  # attribute -> true value x class-mean predicted value (counts)


def diagnose(weights: str | None, dataset: str, world: str = DEFAULT_WORLD, train_per_class: int = 16,
             test_per_class: int = 8, batch_size: int = 256) -> AttributeReport:
    """Render ``dataset``'s base classes with the world's code, encode them with ``weights`` (None: the shipped
    mini CLIP) and score zero-shot (the benchmark's CoOp template) and the nearest class mean per attribute."""
    module = get_world(world).module
    if dataset not in module.BENCH_BY_KEY:
        raise ValueError(f"world {world} has no benchmark {dataset!r}; it has {', '.join(module.BENCH_BY_KEY)}")
    bench = module.BENCH_BY_KEY[dataset]
    index = module.BENCHMARKS.index(bench)
    concepts = module.bench_concepts_cached(index)
    if not any(c.attrs for c in concepts):
        raise ValueError(f"{dataset}'s classes have no attributes to diagnose")
    n_base = base_class_count(len(concepts))  # the base half, as subsample_classes splits it
    # None means the world's shipped weights here (create_backbone's None is random weights: a diagnosis of nothing)
    backbone = create_backbone(MINI_MODEL, weights or str(mini_weights_path(world)))
    backbone.eval()
    transform = build_transform(backbone.image_size, train=False)

    @torch.no_grad()
    def encode(split: int, per_class: int) -> torch.Tensor:
        images = [transform(module.render_bench_image(0, index, split, label, i))
                  for label in range(n_base) for i in range(per_class)]
        x = torch.stack(images)
        out = [backbone.encode("vision", x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return F.normalize(torch.cat(out).float(), dim=-1)

    train, test = encode(TRAIN_SPLIT, train_per_class), encode(TEST_SPLIT, test_per_class)
    y_train = torch.arange(n_base).repeat_interleave(train_per_class)
    y_test = torch.arange(n_base).repeat_interleave(test_per_class)
    prompts = [bench.template.format(c.name.replace("_", " ")) for c in concepts[:n_base]]
    with torch.no_grad():
        text = F.normalize(backbone.encode("text", backbone.tokenize(prompts)).float(), dim=-1)
    means = F.normalize(torch.stack([train[y_train == c].mean(0) for c in range(n_base)]), dim=-1)
    zeroshot, nearest = (test @ text.t()).argmax(1), (test @ means.t()).argmax(1)
    return AttributeReport(dataset, n_base, len(y_test), _percent(zeroshot == y_test), _percent(nearest == y_test),
                           _agreement(concepts, y_test, zeroshot, nearest), _confusion(concepts, y_test, nearest))


def _percent(hits: torch.Tensor) -> float:
    return round(100.0 * hits.float().mean().item(), 1)


def _agreement(concepts: Sequence, truth: torch.Tensor, zeroshot: torch.Tensor, nearest: torch.Tensor) -> pd.DataFrame:
    n, true = len(truth), truth.tolist()
    table = {}
    for key in concepts[0].attrs:
        shared = [sum(concepts[t].attrs[key] == concepts[p].attrs[key]
                      for t, p in zip(true, pred.tolist(), strict=True)) for pred in (zeroshot, nearest)]
        table[key] = [round(100.0 * hits / n, 1) for hits in shared]
    return pd.DataFrame(table, index=["zero-shot", "class mean"]).T.rename_axis("attribute")


def _confusion(concepts: Sequence, truth: torch.Tensor, nearest: torch.Tensor) -> dict[str, pd.DataFrame]:
    out = {}
    for key in concepts[0].attrs:
        true = [str(concepts[t].attrs[key]) for t in truth.tolist()]
        pred = [str(concepts[p].attrs[key]) for p in nearest.tolist()]
        out[key] = pd.crosstab(pd.Series(true, name=f"true {key}"), pd.Series(pred, name="class mean"))
    return out


def format_report(report: AttributeReport, confusion: Sequence[str] = ()) -> str:
    """The report as text: the accuracies, the agreement table and the confusion of the attributes asked for."""
    lines = [f"{report.dataset}: zero-shot {report.zeroshot}, class mean {report.class_mean} "
             f"({report.classes} base classes, {report.test_images} test images; mini-world diagnostic)",
             report.agreement.to_string()]
    for key in confusion:
        if key not in report.confusion:
            raise ValueError(f"{report.dataset} has no attribute {key!r}; it has {', '.join(report.confusion)}")
        lines += [f"confusion of {key} (nearest class mean):", report.confusion[key].to_string()]
    return "\n".join(lines)
