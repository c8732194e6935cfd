"""`perlkit mini calibrate`: does the frozen mini CLIP leave few-shot room where the real benchmarks do?

Few-shot methods can only move class prototypes toward what the frozen image encoder already separates. The gap
between zero-shot CLIP and a 16-shot linear probe on frozen image features measures that room; the real ViT-B/16
benchmarks have it, a mini world that is to test the paper's claims must have it too. Per base-to-novel benchmark
this module measures, on any profile (the mini one by default):

* zero-shot accuracy on all classes and on the base classes (the b2n protocol's base problem);
* a 16-shot linear probe on the base classes: multinomial logistic regression on frozen, L2-normalised image
  embeddings of the base training shots of seed 1 (Dassl-exact ``sample_fewshot``), full-batch L-BFGS in float64
  from zero weights (convex, so deterministic), its weight decay chosen on the few-shot *validation* shots;
* the headroom (probe minus zero-shot, base classes) and one epoch's optimiser steps at PERL's batch size;

and sets them beside the real benchmark: ViT-B/16 zero-shot base accuracy (PERL Table 5, ``data/reported``) and the
real one-epoch steps (base classes x 16 shots / batch). ``calibration_summary`` checks the bars a calibrated
mini world must meet (``*_BAR`` below).
Only the frozen model is measured here, never a method: the world is calibrated on what CLIP can do.

``view_robustness`` measures one more frozen-model property the recipes rely on: zero-shot accuracy on the base
training shots as rendered and under the training augmentations (MMRL's and the unified protocol's crop (0.5, 1),
Dassl's default (0.08, 1), each with a flip), and the linear probe fitted on those views: the headroom left to a
method that trains on them. Web-trained CLIP reads crops of a photo; a mini CLIP that cannot trains every method on
views it does not understand.

Frozen image embeddings are deterministic, so they are cached under the user cache (``calibration/``), keyed by the
weights' sha256, the transform and the images (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from perlkit import files
from perlkit.data import (
    B2N_DATASETS,
    DISPLAY_NAMES,
    PUBLISHED_COUNTS,
    DatasetSplits,
    Datum,
    build_transform,
    canonical_name,
    make_loader,
    sample_fewshot,
    subsample_classes,
)
from perlkit.engine import UNIFIED_CROP_SCALE, autocast_context, recipe
from perlkit.experiments.protocols import Session
from perlkit.files import atomic_write_bytes, cache_root
from perlkit.methods import build_method, get_method_class
from perlkit.reported import reported_b2n

SHOTS = 16
SEED = 1
#: weight decays (on the mean cross-entropy, ``wd/2 * ||W||^2``) the probe chooses from on the validation shots
WEIGHT_DECAYS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
FEATURE_FORMAT = "perlkit-frozen-features/1"
#: the bars a calibrated mini world must meet (headroom, difficulty profile, training budget)
HEADROOM_MEAN_BAR = 10.0
HEADROOM_EACH_BAR = 5.0
HEADROOM_COUNT_BAR = 7
ZEROSHOT_GAP_BAR = 20.0
ZEROSHOT_COUNT_BAR = 9
SPEARMAN_BAR = 0.7
STEPS_FACTOR_BAR = 1.5
#: datasets the training-budget bar lets stay smaller than the real one, said beside the number
STEPS_EXEMPT: tuple[str, ...] = ("imagenet",)


# ----------------------------------------------------------------------------------------------- real benchmarks
def real_zeroshot_base() -> dict[str, float]:
    """Real ViT-B/16 zero-shot base accuracy per dataset: the CLIP row of PERL's Table 5 (= Table 1's cells)."""

    rows = reported_b2n("unified_1epoch")
    clip = rows[(rows["method"] == "CLIP") & (rows["dataset"] != "average")]
    return {str(r.dataset): float(r.base) for r in clip.itertuples()}


def perl_batch_size() -> int:
    """PERL's batch size (App. A), read from its recipe: one epoch's steps are training images / this."""

    return recipe(get_method_class("perl"), "unified").batch_size


def base_class_count(num_classes: int) -> int:
    """CoCoOp's base half: the first ceil(n / 2) labels (``subsample_classes``)."""
    return math.ceil(num_classes / 2)


def real_steps_one_epoch(dataset: str, shots: int = SHOTS, batch_size: int | None = None) -> int:
    """Optimiser steps of one epoch on the real benchmark's base classes (CoOp's class counts)."""
    batch = batch_size or perl_batch_size()
    return math.ceil(base_class_count(PUBLISHED_COUNTS[dataset].num_classes) * shots / batch)


# ----------------------------------------------------------------------------------------------- frozen features
def _feature_key(session: Session, root: str, items: Sequence[Datum]) -> str:
    """A digest of what decides the embeddings: weights, input size, and each image (path, size, mtime)."""
    digest = hashlib.sha256()
    backbone = session.backbone
    digest.update(f"{FEATURE_FORMAT}\0{backbone.weights_sha256()}\0{backbone.image_size}\0eval\0".encode())
    for item in items:
        stat = Path(item.impath).stat()
        rel = Path(item.impath).resolve().relative_to(Path(root).resolve()) if root else Path(item.impath)
        digest.update(f"{rel.as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def feature_cache_path(session: Session, dataset: str, root: str, items: Sequence[Datum]) -> Path:
    """Where the frozen embeddings of ``items`` are cached (user cache; never the repository's data/)."""
    return cache_root() / "calibration" / f"{dataset}-{_feature_key(session, root, items)}.pt"


@torch.no_grad()
def _encode_images(
    session: Session, items: Sequence[Datum], transform: Any, num_workers: int, desc: str, progress: bool
) -> torch.Tensor:
    """CLIP image embeddings (projected, not normalised, float32, CPU) of ``items`` seen through ``transform``."""
    backbone = session.backbone
    loader = make_loader(items, transform, session.profile.eval_batch_size, shuffle=False, num_workers=num_workers)
    chunks = []
    for images, _ in tqdm(loader, desc=desc, disable=not progress, leave=False):
        with autocast_context(backbone.device):
            chunks.append(backbone.encode("vision", images.to(backbone.device)).float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, backbone.embed_dim)


def frozen_image_features(
    session: Session, dataset: str, root: str, items: Sequence[Datum], progress: bool = True
) -> torch.Tensor:
    """CLIP image embeddings (projected, not normalised, float32, CPU) of ``items`` in order, cached on disk."""

    path = feature_cache_path(session, dataset, root, items)
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("format") == FEATURE_FORMAT and payload["features"].shape[0] == len(items):
                return payload["features"]
        except Exception:  # noqa: BLE001 - a truncated or foreign cache file is recomputed, not trusted
            pass
    features = _encode_images(session, items, build_transform(session.backbone.image_size, train=False),
                              session.profile.num_workers, f"features {dataset}", progress)
    buffer = io.BytesIO()
    torch.save({"format": FEATURE_FORMAT, "dataset": dataset, "features": features}, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:  # an unwritable cache only costs time
        pass
    return features


# ----------------------------------------------------------------------------------------------- the probe
@dataclass
class LinearProbe:
    """A fitted multinomial logistic regression on normalised features, with how its weight decay was chosen."""

    weight: torch.Tensor  # [C, D] float64
    bias: torch.Tensor  # [C] float64
    weight_decay: float
    val_accuracy: float
    train_accuracy: float
    val_source: str  # "val" (the few-shot validation split) or "held-out train shots" (no val split)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class scores of (unnormalised) embeddings."""
        return F.normalize(features.double(), dim=-1) @ self.weight.t() + self.bias

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """Top-1 accuracy (percent)."""
        return _accuracy(self.logits(features), labels)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * float((logits.argmax(-1) == labels).double().mean()) if labels.numel() else float("nan")


#: the probe's fit stops once no gradient entry exceeds this: converged, so the answer is the problem's unique optimum
#: and not where an iteration budget happened to stop (an unconverged fit with a tiny decay moved test accuracy by
#: one image between two CPUs whose float32 embeddings differed in their last digits)
PROBE_GRAD_TOLERANCE = 1e-8
PROBE_MAX_ITER = 20_000
#: L-BFGS's memory: with the default 20 the smallest decays (nearly separable shots, weights of norm ~700) needed
#: ~13,000 iterations to converge on Stanford Cars, with 100 about 3,000 (measured: 29 s -> 10 s for the decay grid)
PROBE_HISTORY = 100


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
                  max_iter: int = PROBE_MAX_ITER) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch L-BFGS on mean CE + wd/2 ||W||^2 from zero weights, run to convergence: the problem is strictly
    convex, so its optimum is unique and moves only as much as the embeddings do."""
    x = F.normalize(x.double(), dim=-1)
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                                  history_size=PROBE_HISTORY,
                                  tolerance_grad=PROBE_GRAD_TOLERANCE, tolerance_change=0.0,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.t() + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
        closure()
    largest = max(float(weight.grad.abs().max()), float(bias.grad.abs().max()))
    if largest > 100 * PROBE_GRAD_TOLERANCE:
        warnings.warn(f"linear probe (weight decay {weight_decay:g}) stopped within {max_iter} iterations with a "
                      f"gradient entry of {largest:.1e}: not converged, its accuracy may differ across machines",
                      RuntimeWarning, stacklevel=2)
    return weight.detach(), bias.detach()


def _held_out(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """A boolean mask of the last ``per_class`` shots of each class (for datasets without a val split)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    for c in labels.unique():
        where = (labels == c).nonzero().flatten()
        mask[where[-per_class:]] = True
    return mask


def fit_linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, num_classes: int,
    weight_decays: Sequence[float] = WEIGHT_DECAYS, max_iter: int = PROBE_MAX_ITER,
) -> LinearProbe:
    """Fit the probe for each weight decay, keep the best on validation (ties: the larger decay), never on test.

    Without validation shots (ImageNet has no val split), the last 4 training shots of each class are held out to
    choose the decay, and the chosen probe is then fitted on all training shots.
    """
    source = "val"
    fit_x, fit_y = train_x, train_y
    if val_y.numel() == 0:
        held = _held_out(train_y, min(4, max(1, int(train_y.bincount().min()) // 4)))
        fit_x, fit_y, val_x, val_y = train_x[~held], train_y[~held], train_x[held], train_y[held]
        source = "held-out train shots"
    best: tuple[float, float] | None = None
    for decay in weight_decays:
        weight, bias = _fit_logistic(fit_x, fit_y, num_classes, decay, max_iter)
        probe = LinearProbe(weight, bias, decay, float("nan"), float("nan"), source)
        score = probe.accuracy(val_x, val_y)
        if best is None or score >= best[0]:
            best = (score, decay)
    val_accuracy, decay = best
    weight, bias = _fit_logistic(train_x, train_y, num_classes, decay, max_iter)
    probe = LinearProbe(weight, bias, decay, val_accuracy, float("nan"), source)
    probe.train_accuracy = probe.accuracy(train_x, train_y)
    return probe


# ----------------------------------------------------------------------------------------------- one benchmark
@dataclass
class Calibration:
    """Zero-shot, probe, headroom and step counts of one benchmark, mini beside real."""

    dataset: str
    num_classes: int
    base_classes: int
    train_images: int
    zeroshot_all: float
    zeroshot_base: float
    probe_base: float
    probe_train: float
    probe_val: float
    probe_weight_decay: float
    probe_val_source: str
    headroom: float
    steps_one_epoch: int
    real_zeroshot_base: float | None
    real_base_classes: int | None
    real_steps_one_epoch: int | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def _labels(items: Sequence[Datum]) -> torch.Tensor:
    return torch.tensor([d.label for d in items], dtype=torch.long)


def _zeroshot_accuracy(session: Session, splits: DatasetSplits, features: torch.Tensor, template: str) -> float:
    """Zero-shot CLIP top-1 of cached embeddings: the zero-shot method's prompts and classifier, cosine argmax."""

    method = build_method("zeroshot", session.backbone)
    text = method.classifier(session.classes(method, splits, template)).text.float().cpu()
    return _accuracy(F.normalize(features.float(), dim=-1) @ text.t(), _labels(splits.test))


#: the code that decides a calibration row besides the frozen embeddings: a cached row made by other code is redone
ROW_CODE = ("experiments/calibration.py", "data/fewshot.py", "data/prompts.py", "data/registry.py", "methods/base.py",
            "methods/zeroshot.py", "backbone.py", "engine.py", "methods/perl.py")


def calibrate_dataset(
    session: Session, dataset: str, shots: int = SHOTS, seed: int = SEED, template: str = "coop",
    progress: bool = True,
) -> Calibration:
    """The calibration row of one base-to-novel benchmark (frozen model only), cached beside its embeddings."""
    full = session.dataset(dataset)
    few = sample_fewshot(full, shots, seed)
    base = subsample_classes(few, "base")
    items = [*full.test, *base.train, *base.val]
    root = str(session.data_root)
    code = files.code_fingerprint([files.PACKAGE_ROOT / m for m in ROW_CODE])
    key = hashlib.sha256(json.dumps([_feature_key(session, root, items), shots, seed, template, code]).encode())
    row_path = cache_root() / "calibration" / f"{dataset}-row-{key.hexdigest()[:24]}.json"
    if row_path.is_file():
        try:
            return _with_real(Calibration(**json.loads(row_path.read_text())), shots)
        except (OSError, ValueError, TypeError):  # unreadable or foreign: recomputed
            pass
    row = _calibrate(session, dataset, full, few, base, root, template, progress)
    try:
        files.atomic_write_json(row_path, row.to_dict())
    except OSError:  # an unwritable cache only costs time
        pass
    return _with_real(row, shots)


def _with_real(row: Calibration, shots: int) -> Calibration:
    """The real benchmark's columns, read fresh (data/reported may change; the cached mini columns cannot)."""
    known = row.dataset in PUBLISHED_COUNTS
    return replace(
        row, real_zeroshot_base=real_zeroshot_base().get(row.dataset),
        real_base_classes=base_class_count(PUBLISHED_COUNTS[row.dataset].num_classes) if known else None,
        real_steps_one_epoch=real_steps_one_epoch(row.dataset, shots) if known else None,
    )


def _base_features(
    session: Session, dataset: str, full: DatasetSplits, few: DatasetSplits, base: DatasetSplits, root: str,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frozen embeddings of all test images, the base training and validation shots, and the base test images:
    one cached encoding of ``[*full.test, *base.train, *base.val]`` (the items ``calibrate_dataset`` keys on)."""
    features = frozen_image_features(session, dataset, root, [*full.test, *base.train, *base.val], progress)
    n_test, n_train = len(full.test), len(base.train)
    test_all = features[:n_test]
    train_x, val_x = features[n_test:n_test + n_train], features[n_test + n_train:]
    labels = sorted({d.label for d in (few.train or few.test)})  # subsample_classes' base labels; it keeps test order
    base_labels = set(labels[:base_class_count(len(labels))])
    test_base = test_all[torch.tensor([d.label in base_labels for d in full.test], dtype=torch.bool)]
    if len(test_base) != len(base.test):
        raise AssertionError(f"{dataset}: {len(test_base)} base test rows selected, {len(base.test)} expected")
    return test_all, train_x, val_x, test_base


def _calibrate(
    session: Session, dataset: str, full: DatasetSplits, few: DatasetSplits, base: DatasetSplits, root: str,
    template: str, progress: bool,
) -> Calibration:
    test_all, train_x, val_x, test_base = _base_features(session, dataset, full, few, base, root, progress)
    n_train = len(base.train)
    zeroshot_all = _zeroshot_accuracy(session, full, test_all, template)
    zeroshot_base = _zeroshot_accuracy(session, base, test_base, template)
    probe = fit_linear_probe(train_x, _labels(base.train), val_x, _labels(base.val), len(base.classnames))
    probe_base = probe.accuracy(test_base, _labels(base.test))
    return Calibration(
        dataset=dataset, num_classes=len(full.classnames), base_classes=len(base.classnames), train_images=n_train,
        zeroshot_all=zeroshot_all, zeroshot_base=zeroshot_base, probe_base=probe_base,
        probe_train=probe.train_accuracy, probe_val=probe.val_accuracy, probe_weight_decay=probe.weight_decay,
        probe_val_source=probe.val_source, headroom=probe_base - zeroshot_base,
        steps_one_epoch=math.ceil(n_train / perl_batch_size()),
        real_zeroshot_base=None, real_base_classes=None, real_steps_one_epoch=None,
    )


# ----------------------------------------------------------------------------------------------- training views
#: the training crops whose effect ``view_robustness`` measures: the unified protocol's (MMRL's) and Dassl's default
TRAINING_VIEWS: dict[str, tuple[float, float]] = {"unified_crop": UNIFIED_CROP_SCALE, "dassl_crop": (0.08, 1.0)}
VIEW_DRAWS = 3


def _view_features(session: Session, items: Sequence[Datum], transform: Any, draw_seed: int) -> torch.Tensor:
    """Embeddings of ``items`` seen through ``transform``, its random draws from a private torch stream (in this
    process: no loader workers, whose streams would depend on their number)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draw_seed)
        return _encode_images(session, items, transform, 0, "views", progress=False)


def _zeroshot_on(session: Session, items: Sequence[Datum], text: torch.Tensor, transform: Any, draw_seed: int) -> float:
    """Zero-shot top-1 of ``items`` seen through ``transform`` (one draw of its randomness)."""
    features = _view_features(session, items, transform, draw_seed)
    return _accuracy(F.normalize(features, dim=-1) @ text.t(), _labels(items))


def view_robustness(
    session: Session, dataset: str, shots: int = SHOTS, seed: int = SEED, draws: int = VIEW_DRAWS,
    template: str = "coop",
) -> dict[str, Any]:
    """What the frozen model can do with the views the recipes train on, per training crop (``TRAINING_VIEWS``,
    each with its flip, ``draws`` draws):

    * its zero-shot accuracy (%) on the base training shots as rendered and under the crop (mean over the draws):
      do the views still show their class?
    * ``probe_<crop>``: the calibration's linear probe fitted on the ``draws`` cropped views of every shot (weight
      decay chosen on the validation shots as rendered) and tested on the base test images, beside ``zeroshot_base``
      and ``probe_base`` (the probe on the shots as rendered): the headroom left to a method that trains on these
      views. A probe, not a method: the world is still calibrated on the frozen model alone. (ImageNet has no
      validation shots: its decay is chosen on held-out views whose shots' other draws stay in the fit.)"""
    full = session.dataset(dataset)
    few = sample_fewshot(full, shots, seed)
    base = subsample_classes(few, "base")
    zeroshot = build_method("zeroshot", session.backbone)
    text = zeroshot.classifier(session.classes(zeroshot, base, template)).text.float().cpu()
    size = session.backbone.image_size
    row: dict[str, Any] = {"dataset": dataset, "images": len(base.train),
                           "as_rendered": _zeroshot_on(session, base.train, text, build_transform(size, False), 0)}
    crops = {name: [_view_features(session, base.train, build_transform(size, train=True, crop_scale=scale),
                                   seed * 1000 + d) for d in range(draws)]
             for name, scale in TRAINING_VIEWS.items()}
    labels = _labels(base.train)
    for name, views in crops.items():
        row[name] = sum(_accuracy(F.normalize(v, dim=-1) @ text.t(), labels) for v in views) / draws
    calibration = calibrate_dataset(session, dataset, shots, seed, template, progress=False)
    row["zeroshot_base"], row["probe_base"] = calibration.zeroshot_base, calibration.probe_base
    _, _, val_x, test_x = _base_features(session, dataset, full, few, base, str(session.data_root), progress=False)
    for name, views in crops.items():
        probe = fit_linear_probe(torch.cat(views), labels.repeat(draws), val_x, _labels(base.val),
                                 len(base.classnames))
        row[f"probe_{name}"] = probe.accuracy(test_x, _labels(base.test))
    return row


def recorded_views(weights_sha256: str) -> dict[str, Any] | None:
    """The ``perlkit mini views`` record of these frozen weights, if a checkout holds one (``data/candidates/*/
    views.json``, whose ``weights_sha256`` is the backbone's, as in the calibration): measuring it again encodes
    every benchmark's training shots under several crops, minutes a chapter should not spend. None otherwise."""
    for path in sorted((files.REPO_DATA / "candidates").glob("*/views.json")):
        record = json.loads(path.read_text())
        if record.get("weights_sha256") == weights_sha256:
            return {**record, "path": path.relative_to(files.REPO_DATA.parent).as_posix()}
    return None


def view_robustness_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per benchmark and a mean row: accuracies as rendered and under each training crop."""
    table = pd.DataFrame(rows).set_index("dataset").rename(index=lambda n: DISPLAY_NAMES.get(n, n))
    table.loc["mean"] = table.mean(numeric_only=True)
    return table


# ----------------------------------------------------------------------------------------------- the bars
def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties): Pearson's r of the ranks."""
    return float(pd.Series(list(a)).rank().corr(pd.Series(list(b)).rank()))


def calibration_summary(rows: Sequence[Calibration]) -> dict[str, Any]:
    """Each bar of a calibrated world that the frozen model decides, with its value and pass/fail."""
    n = len(rows)
    headrooms = [r.headroom for r in rows]
    mean_headroom = sum(headrooms) / n if n else 0.0
    at_least = [r.dataset for r in rows if r.headroom >= HEADROOM_EACH_BAR]
    paired = [r for r in rows if r.real_zeroshot_base is not None]
    within = [r.dataset for r in paired if abs(r.zeroshot_base - r.real_zeroshot_base) <= ZEROSHOT_GAP_BAR]
    rho = spearman([r.zeroshot_base for r in paired], [r.real_zeroshot_base for r in paired]) if len(paired) > 2 \
        else None  # undefined for fewer than three datasets (None keeps the JSON strict)
    ratios = {r.dataset: r.steps_one_epoch / r.real_steps_one_epoch for r in rows if r.real_steps_one_epoch}
    inside = [d for d, q in ratios.items() if 1 / STEPS_FACTOR_BAR <= q <= STEPS_FACTOR_BAR]
    outside = [d for d in ratios if d not in inside]
    bars = {
        "headroom": {
            "bar": f"headroom (probe - zero-shot, base): mean >= +{HEADROOM_MEAN_BAR:g}, >= +{HEADROOM_EACH_BAR:g} "
                   f"on >= {HEADROOM_COUNT_BAR} of 11",
            "value": mean_headroom, "count": len(at_least), "of": n, "datasets": at_least,
            "pass": mean_headroom >= HEADROOM_MEAN_BAR and len(at_least) >= HEADROOM_COUNT_BAR,
        },
        "zeroshot_within_20": {
            "bar": f"zero-shot base within {ZEROSHOT_GAP_BAR:g} points of real ViT-B/16 on >= "
                   f"{ZEROSHOT_COUNT_BAR} of 11",
            "value": len(within), "of": len(paired), "datasets": within,
            "pass": len(within) >= ZEROSHOT_COUNT_BAR,
        },
        "zeroshot_spearman": {
            "bar": f"Spearman rank correlation with real zero-shot base >= {SPEARMAN_BAR:g}",
            "value": rho, "pass": rho is not None and rho >= SPEARMAN_BAR,
        },
        "training_budget": {
            "bar": f"one epoch's steps within x{STEPS_FACTOR_BAR:g} of real on all 11 "
                   f"({', '.join(DISPLAY_NAMES.get(d, d) for d in STEPS_EXEMPT)} may stay smaller)",
            "value": len(inside), "of": len(ratios), "outside": outside, "exempt": list(STEPS_EXEMPT),
            "ratios": ratios,
            "pass": bool(ratios) and all(d in STEPS_EXEMPT for d in outside),
        },
    }
    bars["all_pass"] = all(b["pass"] for b in bars.values())
    return bars


def _b2n_names(datasets: Sequence[str], needed_by: str) -> list[str]:
    """Canonical names of ``datasets``, or an error naming those that are not base-to-novel benchmarks."""
    names = [canonical_name(d) for d in datasets]
    unknown = [d for d in names if d not in B2N_DATASETS]
    if unknown:
        raise ValueError(f"{needed_by} needs base-to-novel datasets (with training images), not {', '.join(unknown)}; "
                         f"use any of {', '.join(B2N_DATASETS)}")
    return names


def calibrate(
    session: Session | None = None, datasets: Sequence[str] = B2N_DATASETS, shots: int = SHOTS, seed: int = SEED,
    template: str = "coop", progress: bool = True,
) -> dict[str, Any]:
    """The whole calibration report: per benchmark rows and the bars (JSON-ready)."""

    names = _b2n_names(datasets, "calibration")
    session = session or Session("mini", progress=progress)
    rows = [calibrate_dataset(session, name, shots, seed, template, progress)
            for name in tqdm(names, desc="calibrate", disable=not progress)]
    return {
        "profile": session.profile.name,
        "label": session.profile.label,
        "model": session.profile.model,
        "weights_sha256": session.backbone.weights_sha256(),
        "shots": shots, "seed": seed, "template": template, "batch_size": perl_batch_size(),
        "benchmarks": {r.dataset: r.to_dict() for r in rows},
        "summary": calibration_summary(rows),
    }


# ------------------------------------------------------------------------------------- the adaptation bar
#: issue 13's fourth bar: under its own default recipe (the paper's Table 6 protocol) every rival raises the mean base
#: accuracy over the 11 benchmarks by at least this much over zero-shot CLIP
ADAPTATION_BAR = 5.0


def adaptation_summary(zeroshot: dict[str, float], trained: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The adaptation bar from base accuracies: per method, its gain over zero-shot on each dataset both have and
    the mean gain, which passes at ``ADAPTATION_BAR`` or more."""
    methods = {}
    for method, base in trained.items():
        gains = {d: acc - zeroshot[d] for d, acc in base.items() if d in zeroshot}
        mean = sum(gains.values()) / len(gains) if gains else None
        methods[method] = {"base": dict(base), "gain": gains, "mean_gain": mean,
                           "pass": mean is not None and mean >= ADAPTATION_BAR}
    return {"bar": f"each rival's own default recipe raises mean base accuracy over zero-shot by >= "
                   f"+{ADAPTATION_BAR:g}",
            "zeroshot_base": dict(zeroshot), "methods": methods,
            "all_pass": bool(methods) and all(m["pass"] for m in methods.values())}


def adaptation(session: Session, methods: Sequence[str] | None = None, datasets: Sequence[str] = B2N_DATASETS,
               seed: int = SEED) -> dict[str, Any]:
    """Measure the adaptation bar: each rival trained with its own default recipe (``protocol="default"``) and
    zero-shot CLIP, as ordinary base-to-novel runs in the session's result store, so that an interrupted check
    resumes and its runs are the very ones ``perlkit results`` makes for these weights. Unlike the calibration this
    trains methods; it checks a world, and a world is never tuned on it. PERL keeps its one epoch under every
    protocol, so it is not one of the default methods: its gain is a finding, not a bar."""
    from perlkit.experiments.protocols import b2n_specs
    from perlkit.experiments.sweeps import rival_methods

    names = _b2n_names(datasets, "the adaptation bar")
    methods = list(methods) if methods else rival_methods()
    if "zeroshot" in methods:
        raise ValueError("zero-shot CLIP is what the methods are compared with; leave it out of --methods")
    profile = session.profile.name
    specs = b2n_specs(["zeroshot"], names, (seed,), profile) + b2n_specs(methods, names, (seed,), profile,
                                                                        protocol="default")
    base: dict[str, dict[str, float]] = {}
    for spec, result in zip(specs, session.sweep(specs, desc="adaptation"), strict=True):
        base.setdefault(spec.method, {})[spec.dataset] = result["metrics"]["base"]
    zeroshot = base.pop("zeroshot")
    return {"profile": profile, "label": session.profile.label, "weights_sha256": session.backbone.weights_sha256(),
            "seed": seed, **adaptation_summary(zeroshot, base)}


def adaptation_table(report: dict[str, Any]) -> pd.DataFrame:
    """Base accuracy per benchmark (rows) for zero-shot and each method (columns), then their means and each
    method's mean gain over zero-shot (the bar's number)."""
    frame = pd.DataFrame({"zero-shot": report["zeroshot_base"],
                          **{m: r["base"] for m, r in report["methods"].items()}})
    frame.index = [DISPLAY_NAMES.get(d, d) for d in frame.index]
    frame.loc["mean"] = frame.mean()
    frame.loc["gain over zero-shot"] = frame.loc["mean"] - frame.loc["mean", "zero-shot"]
    frame.loc["gain over zero-shot", "zero-shot"] = float("nan")
    return frame


# ----------------------------------------------------------------------------------------------- presentation
def calibration_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per benchmark, profile-labelled columns: what the chapter and the CLI print."""
    who = report["profile"]
    rows = []
    for name, r in report["benchmarks"].items():
        rows.append({
            "benchmark": DISPLAY_NAMES.get(name, name),
            f"{who} zero-shot all": r["zeroshot_all"],
            f"{who} zero-shot base": r["zeroshot_base"],
            f"{who} probe base": r["probe_base"],
            f"{who} headroom": r["headroom"],
            "real zero-shot base": r["real_zeroshot_base"],
            f"{who} steps": r["steps_one_epoch"],
            "real steps": r["real_steps_one_epoch"],
        })
    return pd.DataFrame(rows).set_index("benchmark")


def calibration_verdict(report: dict[str, Any]) -> str:
    """What the bars mean for the later chapters, in one sentence chosen by the bars' outcome (never typed)."""
    who = report["profile"]
    if report["summary"]["all_pass"]:
        return (f"Every bar passes, so the {who} profile leaves room to adapt where the real benchmarks do, and the "
                f"later chapters' {who} numbers can test whether a method uses it")
    return (f"Not every bar passes: where the probe gains little or loses, the {who} image features carry hardly more "
            f"class information than the prompts already state, so the later chapters' {who} numbers test that the "
            "code runs and behaves, not whether PERL's claims hold")


def adaptation_verdict(summary: dict[str, Any] | None) -> str:
    """``report.stored_adaptation``'s outcome in words: how many rivals reach the bar (on the seeds' mean gain), and
    whether any seed alone does when none does on average."""
    from perlkit.plots import method_label

    if summary is None:
        return "the bar cannot be read: not all of its runs are stored"
    rows = summary["methods"]
    passed = [method_label(m) for m, r in rows.items() if r["pass"]]
    if len(passed) == len(rows):
        return "every rival reaches it"
    if passed:
        return f"{len(passed)} of {len(rows)} rivals reach it ({', '.join(passed)})"
    any_seed = any(g >= ADAPTATION_BAR for gains in summary["seed_gains"].values() for g in gains.values())
    return "no rival reaches it" + ("" if any_seed else ", at any seed")


def views_sentence(views: dict[str, Any] | None) -> str:
    """The recorded crop probe (``recorded_views``) in words: mean headroom over the benchmarks on the shots as
    rendered and under each training crop the recipes use."""
    if views is None:
        return "has no record for these weights"
    mean = pd.DataFrame(views["benchmarks"]).mean(numeric_only=True)
    gain = {key: mean[key] - mean["zeroshot_base"] for key in ("probe_unified_crop", "probe_dassl_crop", "probe_base")}
    return (f"finds that it keeps {gain['probe_unified_crop']:+.2f} points over zero-shot under the (0.5, 1) crops of "
            f"MMRL and MMRL++ and {gain['probe_dassl_crop']:+.2f} under Dassl's (0.08, 1) crops of MMA and R-MMA, "
            f"against {gain['probe_base']:+.2f} on the shots as rendered")


def bars_table(report: dict[str, Any]) -> pd.DataFrame:
    """The bars as rows: what is required, the measured value and pass/fail."""
    rows = []
    for name, bar in report["summary"].items():
        if name == "all_pass":
            continue
        value = bar["value"]
        shown = f"{value:+.2f} mean, {bar['count']}/{bar['of']} >= +{HEADROOM_EACH_BAR:g}" if name == "headroom" \
            else f"{value:.2f}" if isinstance(value, float) else "n/a" if value is None else f"{value}/{bar['of']}"
        if name == "training_budget" and bar["ratios"]:
            ratios = bar["ratios"].values()
            shown += f" ({report['profile']} / real from x{min(ratios):.2f} to x{max(ratios):.2f})"
        rows.append({"bar": bar["bar"], "measured": shown, "pass": "pass" if bar["pass"] else "FAIL"})
    return pd.DataFrame(rows).set_index("bar")


def calibration_plot(report: dict[str, Any]):  # noqa: ANN201 - a matplotlib Figure
    """Two panels, one above the other at the book's width: probe vs zero-shot on base classes per benchmark, and mini
    vs real zero-shot base accuracy (benchmark names placed so none overlaps another)."""
    from perlkit.plots import label_points, panel_grid

    who = report["profile"]
    table = calibration_table(report)
    fig, (left, right) = panel_grid(2, 3.6, max_cols=1)
    x = range(len(table))
    left.bar([i - 0.2 for i in x], table[f"{who} zero-shot base"], width=0.4, label="zero-shot (base)")
    left.bar([i + 0.2 for i in x], table[f"{who} probe base"], width=0.4, label="16-shot linear probe (base)")
    left.set_xticks(list(x), table.index, rotation=45, ha="right")
    left.set_ylabel("top-1 on base classes (%)")
    left.set_title(f"{who}: headroom = probe - zero-shot")
    left.set_ylim(0, 118)
    left.legend(loc="upper left", ncol=2)
    mini, real = table[f"{who} zero-shot base"], table["real zero-shot base"]
    gap = ZEROSHOT_GAP_BAR
    right.fill_between([0, 100], [-gap, 100 - gap], [gap, 100 + gap], color="0.9", label=f"within {gap:g} points")
    right.plot([0, 100], [0, 100], color="0.5", lw=1)
    right.scatter(real, mini, zorder=3)
    right.set_xlim(0, 100)
    right.set_ylim(0, 100)
    right.set_xlabel("real ViT-B/16 zero-shot base (PERL Table 5, %)")
    right.set_ylabel(f"{who} zero-shot base (%)")
    right.set_title(f"difficulty profile: {who} vs real")
    right.legend(loc="upper left")
    fig.tight_layout()
    label_points(right, list(real), list(mini), list(table.index))
    return fig
