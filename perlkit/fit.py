"""PERL (or any registered method) on a user's own images: fit, save, load and predict.

``fit_own_data`` reads an image folder or CSV (``perlkit.data.custom``), samples shots with the Dassl-exact sampler,
optionally splits the classes into base and novel halves, trains through the benchmarks' own ``Session.build`` /
``Session.fit`` / ``Session.score`` (one training loop for everything), evaluates zero-shot CLIP and the fitted method
on the held-out test images, and saves a ``.safetensors`` checkpoint. ``load`` rebuilds the method on the same frozen
backbone, refusing any other model or weights, and ``FittedModel.predict`` ranks classes for new images, including
class names never trained on (open vocabulary, as CLIP allows).

Checkpoint (``perlkit-fit-v1``): the method's trainable tensors, and string metadata: ``format``, ``method``,
``template``, ``perlkit_version``, ``git_commit`` as plain strings; ``options``, ``config``, ``classnames``,
``trained_classes``, ``backbone`` (model, pretrained, weights_sha256), ``profile`` (name, model, pretrained: what
rebuilds the backbone, null meaning the profile's own) and ``fit`` (data, shots, seed, metrics, counts) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

import perlkit
from perlkit.data import (
    DatasetError,
    DatasetSplits,
    build_transform,
    format_prompts,
    load_own_data,
    own_split_file,
    require_shots,
    sample_fewshot,
    subsample_classes,
)
from perlkit.data.custom import DEFAULT_TEMPLATE, data_name
from perlkit.engine import CheckpointError, autocast_context
from perlkit.experiments.protocols import Session, harmonic_mean
from perlkit.experiments.store import RunSpec
from perlkit.files import atomic_write_bytes, cache_root, device_name, ensure_writable, git_commit
from perlkit.methods import ClassSet, Method, build_method
from perlkit.profiles import Profile, get_profile

FIT_FORMAT = "perlkit-fit-v1"
#: the run kind of a fit on own data in its ``RunSpec`` (never stored in the benchmark result store)
FIT_KIND = "own_data"


class OwnDataSession(Session):
    """A ``Session`` whose prompts come from the data's own template (``DatasetSplits.template``).

    The benchmark session looks a dataset's template up in the registry by name; a user's data has no entry there,
    so this is the one thing that differs. Training and evaluation are the benchmark session's own methods.
    """

    def classes(self, method: Method, splits: DatasetSplits, template: str, protocol: str = "unified") -> ClassSet:
        """Prompts of a split's classes from the template the data was read with."""
        return method.class_set(format_prompts(splits.classnames, splits.template))


@dataclass
class FitResult:
    """What ``fit_own_data`` did: where the checkpoint is, the accuracies, and the counts behind them."""

    checkpoint: str
    method: str
    data: str
    name: str
    classes: list[str]
    trained_classes: list[str]
    template: str
    shots: int
    seed: int
    base_novel: bool
    profile: str
    profile_label: str
    model: str
    trainable_params: int
    metrics: dict[str, dict[str, float]]
    counts: dict[str, int]
    split_file: str
    train_seconds: float
    seconds: float
    checkpoint_bytes: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)  # per optimiser step
    device: str = ""  # where it trained (files.device_name: the GPU's model, or the CPU's with its threads)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``--json``)."""
        return asdict(self)


def _profile_args(profile: Profile) -> dict[str, str | None]:
    """What rebuilds this profile's backbone on another machine: the profile name, and model / weights only where
    they are not the profile's own (the mini weights' path differs per checkout)."""
    default = get_profile(profile.name)
    return {
        "name": profile.name,
        "model": None if profile.model == default.model else profile.model,
        "pretrained": None if (profile.model, profile.pretrained) == (default.model, default.pretrained)
        else (profile.pretrained or "random"),
    }


def profile_label(profile: Profile) -> str:
    """The label of every printed accuracy: backbone and weights (so mini numbers are never read as the paper's)."""
    if profile.name == "mini" and _profile_args(profile)["pretrained"] is None:
        return "mini profile: perlkit's mini CLIP, not comparable with the paper's numbers"
    weights = "random" if profile.pretrained is None else Path(profile.pretrained).name
    return f"{profile.name} profile: {profile.model} with {weights} weights"


def default_checkpoint_path(data: str | os.PathLike, method: str) -> Path:
    """``<cache>/fits/<data name>-<method>.safetensors``: where ``perlkit fit`` saves without ``--out``."""
    return cache_root() / "fits" / f"{data_name(data)}-{method}.safetensors"


def fit_own_data(
    data: str | os.PathLike,
    method: str = "perl",
    shots: int = 16,
    profile: str | Profile = "mini",
    model: str | None = None,
    pretrained: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    seed: int = 1,
    base_novel: bool = False,
    out: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
    epochs: int | None = None,
    progress: bool = True,
) -> FitResult:
    """Train a method on an image folder or CSV through the benchmarks' path and save it as ``.safetensors``.

    Zero-shot CLIP and the fitted method are both scored on the held-out test images (with ``base_novel``: trained
    on the base half of the classes, scored on base among base and novel among novel, as in CoCoOp's protocol).
    """
    start = time.perf_counter()
    prof = profile if isinstance(profile, Profile) else get_profile(profile, model=model, pretrained=pretrained)
    if shots < 1:
        raise DatasetError(f"--shots must be at least 1, got {shots}")
    splits = load_own_data(data, template)
    require_shots(splits, shots)
    out = Path(out) if out else default_checkpoint_path(data, method)
    ensure_writable(out.parent, "checkpoints")  # before training, not after it
    few = sample_fewshot(splits, shots, seed, cache=False)  # deterministic from the seed: nothing to cache
    if base_novel:
        if splits.num_classes < 4:
            raise DatasetError(f"--base-novel needs at least 4 classes (2 base, 2 novel); {splits.root} has "
                               f"{splits.num_classes}")
        targets = {"base": subsample_classes(few, "base"), "novel": subsample_classes(few, "novel")}
    else:
        targets = {"base": few}
    train_on = targets["base"]
    session = OwnDataSession(prof, progress=progress)
    spec = RunSpec(FIT_KIND, method, splits.name, seed=seed, shots=shots, options=dict(options or {}),
                   train_overrides={"epochs": epochs} if epochs else {}, template=template, profile=prof.name)
    fitted = session.build(spec)
    train_log = session.fit(fitted, train_on, spec)
    zeroshot = build_method("zeroshot", session.backbone)
    metrics: dict[str, dict[str, float]] = {"zero-shot": {}, method: {}}
    counts = {"classes": splits.num_classes, "train_images": len(train_on.train), "steps": len(train_log["steps"]),
              "split_train": len(splits.train), "split_val": len(splits.val), "split_test": len(splits.test)}
    for row, scored in (("zero-shot", zeroshot), (method, fitted)):
        for target, subset in targets.items():
            evaluated = session.score(scored, subset, target, template, f"{row} {target}")
            metrics[row][target if base_novel else "accuracy"] = evaluated.accuracy
            counts[f"test_{target}"] = evaluated.total
        if base_novel:
            metrics[row]["hm"] = harmonic_mean(metrics[row]["base"], metrics[row]["novel"])
    result = FitResult(
        checkpoint=str(out), method=method, data=str(Path(data).expanduser().resolve()), name=splits.name,
        classes=list(splits.classnames), trained_classes=list(train_on.classnames), template=template, shots=shots,
        seed=seed, base_novel=base_novel, profile=prof.name, profile_label=profile_label(prof), model=prof.model,
        trainable_params=fitted.num_trainable(), metrics=metrics, counts=counts,
        split_file=str(own_split_file(data) or data), train_seconds=train_log["seconds"], seconds=0.0,
        options=dict(options or {}), losses=[step["loss"] for step in train_log["steps"]],
        device=device_name(session.backbone.device),
    )
    save_fit(fitted, out, result, _profile_args(prof))
    result.checkpoint_bytes = out.stat().st_size
    result.seconds = time.perf_counter() - start
    return result


def save_fit(method: Method, path: str | os.PathLike, result: FitResult, profile: dict[str, str | None]) -> Path:
    """Write the trainable tensors and what a later load must check (method, options, classes, template, backbone
    and its weights' sha256) as one ``.safetensors`` file, atomically."""
    from safetensors.torch import save

    backbone = method.backbone
    metadata = {
        "format": FIT_FORMAT,
        "method": method.name,
        "template": result.template,
        "perlkit_version": perlkit.__version__,
        "git_commit": git_commit(),
        "options": json.dumps(result.options, sort_keys=True),
        "config": json.dumps(method.config_dict(), sort_keys=True),
        "classnames": json.dumps(result.classes),
        "trained_classes": json.dumps(result.trained_classes),
        "backbone": json.dumps({"model": backbone.model_name, "pretrained": backbone.pretrained,
                                "weights_sha256": backbone.weights_sha256()}),
        "profile": json.dumps(profile),
        "fit": json.dumps({"data": result.data, "name": result.name, "shots": result.shots, "seed": result.seed,
                           "base_novel": result.base_novel, "metrics": result.metrics, "counts": result.counts,
                           "split_file": result.split_file}, sort_keys=True),
    }
    tensors = {k: v.contiguous().clone() for k, v in method.trainable_state_dict().items()}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def read_fit(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A fit checkpoint's tensors and decoded metadata, or a ``CheckpointError`` naming the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118  (safe_open API)
    except Exception as err:  # a torch .pt file, a truncated file, not safetensors at all
        hint = " (benchmark checkpoints .pt are loaded with perlkit.engine.load_checkpoint)" \
            if path.suffix == ".pt" else ""
        raise CheckpointError(f"{path} is not a readable .safetensors checkpoint{hint} ({type(err).__name__}: "
                              f"{err}); `perlkit fit` writes them") from err
    if raw.get("format") != FIT_FORMAT:
        raise CheckpointError(f"{path} is not a perlkit fit checkpoint (format {raw.get('format')!r}, expected "
                              f"{FIT_FORMAT!r}); `perlkit fit` writes them")
    meta: dict[str, Any] = dict(raw)
    try:
        for key in ("options", "config", "classnames", "trained_classes", "backbone", "profile", "fit"):
            meta[key] = json.loads(raw[key])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is incomplete: metadata field {err} is missing or malformed") from err
    return tensors, meta


def _check_backbone(path: Path, meta: dict[str, Any], backbone: Any) -> None:
    """Refuse a backbone other than the one the checkpoint was trained on: another model or other weights."""
    want = meta["backbone"]
    if backbone.model_name != want["model"]:
        raise CheckpointError(
            f"{path} was fitted on backbone {want['model']!r}, not {backbone.model_name!r}; load it on "
            f"{want['model']!r} (the trained tensors' shapes belong to that model)"
        )
    if backbone.weights_sha256() != want["weights_sha256"]:
        raise CheckpointError(
            f"{path} was fitted on other {want['model']!r} weights (sha256 {want['weights_sha256'][:12]}..., from "
            f"{want['pretrained'] or 'random'!r}) than the loaded ones ({backbone.weights_sha256()[:12]}..., from "
            f"{backbone.pretrained or 'random'!r}); pass the weights it was fitted on (--pretrained / pretrained=)"
        )


class FittedModel:
    """A fitted method on its frozen backbone: ``.classes`` and ``.predict(images)`` (top-k labels and scores)."""

    def __init__(self, method: Method, classes: list[str], trained_classes: list[str], template: str,
                 metadata: dict[str, Any], path: Path) -> None:
        self.method = method
        self.classes = list(classes)
        self.trained_classes = list(trained_classes)
        self.template = template
        self.metadata = metadata
        self.path = path
        self._transform = build_transform(method.backbone.image_size, train=False)
        self._classifiers: dict[tuple[str, ...], Any] = {}

    def __repr__(self) -> str:
        return (f"FittedModel({self.method.name} on {self.method.backbone.model_name}, {len(self.classes)} classes, "
                f"from {self.path})")

    def _classifier(self, classes: Sequence[str]) -> Any:
        key = tuple(classes)
        if key not in self._classifiers:
            if not key or any(not isinstance(c, str) or not c.strip() for c in key):
                raise ValueError(f"class names must be non-empty strings, got {list(key)!r}")
            if len(set(key)) != len(key):
                raise ValueError(f"class names must be distinct, got {list(key)!r}")
            # the trained vocabulary uses the trained path; any other is held-out classes (MMRL's decoupled inference)
            target = "base" if list(key) == self.trained_classes else "novel"
            class_set = self.method.class_set(format_prompts(list(key), self.template))
            with torch.no_grad(), autocast_context(self.method.backbone.device):
                self._classifiers[key] = self.method.classifier(class_set, target)
        return self._classifiers[key]

    def _tensor(self, image: str | os.PathLike | Image.Image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            return self._transform(image.convert("RGB"))
        if not Path(image).is_file():
            raise DatasetError(f"image {image} not found")
        try:
            with Image.open(image) as picture:
                return self._transform(picture.convert("RGB"))
        except Exception as err:  # PIL raises many types for a file it cannot decode
            raise DatasetError(f"cannot read image {image} ({type(err).__name__}: {err})") from err

    @torch.no_grad()
    def predict(self, images: Any, top_k: int = 5, classes: Sequence[str] | None = None,
                batch_size: int = 64) -> list[list[tuple[str, float]]]:
        """Top-k (class name, probability) per image; ``classes`` replaces the vocabulary (open vocabulary).

        ``images``: paths or PIL images (one or a list); probabilities are CLIP's softmax over the classes.
        """
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        names = list(classes) if classes is not None else self.classes
        classifier = self._classifier(names)
        k = max(1, min(int(top_k), len(names)))
        device = self.method.backbone.device
        self.method.eval()
        out: list[list[tuple[str, float]]] = []
        images = list(images)
        for i in range(0, len(images), batch_size):
            batch = torch.stack([self._tensor(im) for im in images[i:i + batch_size]]).to(device)
            with autocast_context(device):
                logits = self.method.logits(batch, classifier)
            scores, index = logits.float().softmax(-1).topk(k, dim=-1)
            out += [[(names[j], float(s)) for s, j in zip(row_s.tolist(), row_i.tolist(), strict=True)]
                    for row_s, row_i in zip(scores, index, strict=True)]
        return out


def load(path: str | os.PathLike, *, device: str | None = None, pretrained: str | None = None,
         backbone: Any = None) -> FittedModel:
    """Rebuild a fitted method from its ``.safetensors`` file on the very backbone it was trained on.

    The backbone is rebuilt from the recorded profile (or ``pretrained`` names where its weights are on this machine,
    or an already built ``backbone`` is given); another model or weights whose sha256 differs is refused.
    """
    path = Path(path)
    tensors, meta = read_fit(path)
    if backbone is None:
        recorded = meta["profile"]
        prof = get_profile(recorded["name"], model=recorded.get("model"),
                           pretrained=pretrained or recorded.get("pretrained"), device=device)
        if prof.model != meta["backbone"]["model"]:
            raise CheckpointError(f"{path} records backbone {meta['backbone']['model']!r} but profile "
                                  f"{recorded!r} builds {prof.model!r}; the checkpoint is inconsistent")
        backbone = prof.backbone()
    _check_backbone(path, meta, backbone)
    with torch.random.fork_rng(devices=[]):  # building draws initial values (then replaced): not the caller's RNG
        torch.manual_seed(0)
        method = build_method(meta["method"], backbone, **meta["options"]).to(backbone.device)
    if json.loads(json.dumps(method.config_dict(), sort_keys=True)) != meta["config"]:
        raise CheckpointError(f"{path} was fitted with options {meta['config']}, the rebuilt method has "
                              f"{method.config_dict()}; this perlkit builds {meta['method']!r} differently")
    own = dict(method.trainable_parameters())
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, tensor in tensors.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, expected {tuple(own[name].shape)}")
    method.load_state_dict(tensors, strict=False)
    method.eval()
    return FittedModel(method, meta["classnames"], meta["trained_classes"], meta["template"], meta, path)


# ---------------------------------------------------------------------------------------------- command line
def _format_fit(result: FitResult) -> str:
    counts = result.counts
    lines = [
        f"perlkit fit: {result.name}: {counts['classes']} classes, {counts['split_train']} train / "
        f"{counts['split_val']} val / {counts['split_test']} test images (split: {result.split_file})",
        f"{result.method}: {result.trainable_params:,} trainable parameters, {counts['steps']} optimiser steps on "
        f"{result.shots} shots x {len(result.trained_classes)} classes (seed {result.seed}), "
        f"{result.train_seconds:.1f} s",
        f"held-out test accuracy, % ({result.profile_label}):",
    ]
    columns = ["base", "novel", "hm"] if result.base_novel else ["accuracy"]
    lines.append(f"  {'':<12}" + "".join(f"{c:>10}" for c in columns))
    for row, values in result.metrics.items():
        lines.append(f"  {row:<12}" + "".join(f"{values[c]:>10.2f}" for c in columns))
    lines.append(f"checkpoint: {result.checkpoint} ({result.checkpoint_bytes / 1024:.1f} KB)")
    return "\n".join(lines)


def cmd_fit(args: argparse.Namespace) -> int:
    """``perlkit fit``: train on an image folder or CSV, print zero-shot and fitted accuracy, save the checkpoint."""
    result = fit_own_data(
        args.data, method=args.method, shots=args.shots, profile=args.profile, model=args.model,
        pretrained=args.pretrained, template=args.template, seed=args.seed, base_novel=args.base_novel, out=args.out,
        options=dict(args.option or []), epochs=args.epochs, progress=not args.json and sys.stderr.isatty(),
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else _format_fit(result))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``perlkit predict``: top-k classes of images from a fitted checkpoint, optionally over new class names."""
    model = load(args.checkpoint, pretrained=args.pretrained)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    predictions = model.predict(args.images, top_k=args.top_k, classes=classes)
    if args.json:
        print(json.dumps([{"image": str(image), "top_k": [{"label": label, "score": score} for label, score in top]}
                          for image, top in zip(args.images, predictions, strict=True)], indent=2))
        return 0
    for image, top in zip(args.images, predictions, strict=True):
        print(image)
        for label, score in top:
            print(f"  {100 * score:6.2f} %  {label}")
    return 0


def add_fit_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``fit`` and ``predict`` on the top-level sub-parsers (called by ``perlkit.cli``)."""
    from perlkit.methods import list_methods
    from perlkit.methods.registry import parse_option

    f = sub.add_parser("fit", help="train a method on your own image folder or CSV and save a checkpoint",
                       description="Train on DIR (one sub-folder a class) or a CSV path,label[,split]; evaluate "
                       "zero-shot and fitted accuracy on the held-out test images; save a .safetensors checkpoint.")
    f.add_argument("--data", required=True, metavar="DIR|CSV")
    f.add_argument("--method", default="perl", choices=list_methods())
    f.add_argument("--shots", type=int, default=16, help="training images a class (default 16)")
    f.add_argument("--profile", default="mini", choices=["mini", "paper"])
    f.add_argument("--model", default=None, help="open_clip model (default: the profile's)")
    f.add_argument("--pretrained", default=None, help="open_clip tag, local weights file, or 'random'")
    f.add_argument("--template", default=DEFAULT_TEMPLATE, help=f"prompt template (default {DEFAULT_TEMPLATE!r})")
    f.add_argument("--seed", type=int, default=1, help="few-shot sampling and training seed")
    f.add_argument("--base-novel", action="store_true", help="train on half the classes, test base and novel")
    f.add_argument("--epochs", type=int, default=None, help="epochs (default: the paper's one-epoch protocol)")
    f.add_argument("--option", action="append", type=parse_option, metavar="KEY=VALUE",
                   help="method option, e.g. --option steps=2 (repeatable)")
    f.add_argument("--out", default=None, help="checkpoint file (default <cache>/fits/<data>-<method>.safetensors)")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="classify images with a checkpoint from `perlkit fit`")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--classes", default=None, help="comma-separated class names replacing the trained ones")
    p.add_argument("--pretrained", default=None, help="where the backbone's weights are, if not where recorded")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)
