"""The CoOp evaluation protocols: base-to-novel, cross-dataset transfer and domain generalisation.

One function runs one (method, dataset, seed) cell and caches it; sweeps call it in a loop with a progress bar,
so a killed sweep resumes at the first missing cell. Cross-dataset transfer and domain generalisation share one
ImageNet-trained model per (method, seed), exactly as in the paper, so they come from one run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from perlkit.data import (
    B2N_DATASETS,
    DATASET_NAMES,
    DG_TARGETS,
    XD_TARGETS,
    DatasetError,
    DatasetSplits,
    build_transform,
    format_prompts,
    get_template,
    load_dataset,
    make_loader,
    sample_fewshot,
    subsample_classes,
)
from perlkit.engine import (
    EvalResult,
    TrainConfig,
    evaluate,
    protocol_crop_scale,
    protocol_template,
    recipe,
    save_checkpoint,
    seed_everything,
    train,
)
from perlkit.experiments.store import RESULT_SCHEMA, ResultStore, RunSpec, provenance, run_fingerprint
from perlkit.methods import ClassSet, Method, build_method, get_method_class
from perlkit.profiles import Profile, get_profile


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2BN / (B + N), the headline base-to-novel number."""
    return 0.0 if base + novel == 0 else 2.0 * base * novel / (base + novel)


def _task(spec: RunSpec) -> str:
    """The rivals' name for a protocol when they look up per-dataset settings ('b2n' or 'cross')."""
    return "cross" if spec.kind == "imagenet_transfer" else "b2n"


class Session:
    """A profile with its backbone and data root, built once and shared by every run of a sweep."""

    def __init__(self, profile: Profile | str = "mini", progress: bool = True, store: ResultStore | None = None,
                 skip_corrupt: bool = False):
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.skip_corrupt = skip_corrupt  # drop unreadable images with a warning instead of failing the run
        if self.profile.threads:
            torch.set_num_threads(self.profile.threads)
        self.progress = progress
        self.store = store or ResultStore(self.profile.store_name)
        self._backbone = None
        self._root = None
        self._datasets: dict[str, DatasetSplits] = {}

    @property
    def backbone(self):
        """The frozen CLIP, loaded on first use."""
        if self._backbone is None:
            self._backbone = self.profile.backbone()
        return self._backbone

    @property
    def data_root(self):
        """The data root, resolved (and for mini, built) on first use."""
        if self._root is None:
            self._root = self.profile.resolve_data_root()
        return self._root

    def dataset(self, name: str) -> DatasetSplits:
        """A dataset's full splits, read once per session."""
        if name not in self._datasets:
            self._datasets[name] = load_dataset(name, self.data_root)
        return self._datasets[name]

    # ------------------------------------------------------------------ building blocks
    def build(self, spec: RunSpec) -> Method:
        """The method of a run, with the per-dataset options of its own recipe when protocol is 'default'."""
        options = dict(spec.options)
        if spec.protocol == "default":
            options = {**get_method_class(spec.method).dataset_options(spec.dataset, task=_task(spec)), **options}
        backbone = self.backbone  # loaded first: loading draws random numbers, which must not shift this run's seed
        seed_everything(spec.seed)
        method = build_method(spec.method, backbone, **options)
        return method.to(backbone.device)  # the method's own modules live beside the frozen weights (CUDA)

    def train_config(self, method: Method, spec: RunSpec) -> TrainConfig:
        """The run's recipe: the method's own settings (per dataset and task under 'default', e.g. ImageNet batch
        sizes), the chosen protocol, then the spec's explicit overrides."""
        return recipe(method, spec.protocol, spec.dataset, _task(spec), seed=spec.seed, **spec.train_overrides)

    def classes(self, method: Method, splits: DatasetSplits, template: str, protocol: str = "unified") -> ClassSet:
        """Prompts of a split's classes: the requested template kind (CoOp's, the paper's App. D) under 'unified',
        the method's official prompts (``Method.own_template``, e.g. MMA's "a photo of a {}.") under 'default'."""
        kind = protocol_template(method, protocol, template)
        return method.class_set(format_prompts(splits.classnames, get_template(splits.name, kind)))

    def fit(self, method: Method, splits: DatasetSplits, spec: RunSpec) -> dict[str, Any]:
        """Train on a few-shot split with the one training loop (recipe, prompts and crop scale of the protocol)."""
        cfg = self.train_config(method, spec)
        size = self.backbone.image_size
        transform = build_transform(size, train=True, crop_scale=protocol_crop_scale(method, spec.protocol))
        classes = self.classes(method, splits, spec.template, spec.protocol)

        def batches(epoch: int):
            return make_loader(
                splits.train, transform, cfg.batch_size, shuffle=True,
                num_workers=self.profile.num_workers, seed=cfg.seed * 1000 + epoch, skip_corrupt=self.skip_corrupt,
            )

        history = train(method, batches, classes, cfg, progress=self.progress, desc=f"{spec.method}:{splits.name}")
        return {"config": cfg.to_dict(), **history.to_dict()}

    def score(
        self, method: Method, splits: DatasetSplits, target: str, template: str, desc: str, protocol: str = "unified"
    ) -> EvalResult:
        """Top-1 accuracy on a split's test set, as one closed-set problem; under 'default' with the method's own
        prompts and its official test-time options for this target (``Method.target_options``, e.g. MMRL++'s beta)."""
        loader = make_loader(
            splits.test, build_transform(self.backbone.image_size, train=False), self.profile.eval_batch_size,
            shuffle=False, num_workers=self.profile.num_workers, skip_corrupt=self.skip_corrupt,
        )
        at_test = method.target_options(splits.name, target) if protocol == "default" else {}
        with method.options_for(**at_test):
            return evaluate(method, loader, self.classes(method, splits, template, protocol), target,
                            progress=self.progress, desc=desc)

    def _record(self, spec: RunSpec, method: Method, metrics: dict, counts: dict, train_log: dict, start: float):
        payload = {
            "schema": RESULT_SCHEMA,
            "spec": spec.to_dict(),
            "metrics": metrics,
            "counts": counts,
            "trainable_params": method.num_trainable(),
            "train": train_log,
            "seconds": time.perf_counter() - start,
            "provenance": provenance(self.profile.to_dict(), self.backbone.device, self.fingerprint(spec)),
        }
        if method.num_trainable():  # checkpoint first: the result file is what marks the run as done
            save_checkpoint(method, self.store.checkpoint_path(spec), extra={"spec": spec.to_dict()})
        self.store.put(spec, payload)
        return payload

    # ------------------------------------------------------------------ protocols
    def base_to_novel(self, spec: RunSpec, recompute: bool = False) -> dict[str, Any]:
        """Train on base classes (16 shots), test base among base and novel among novel classes."""
        if spec.kind != "b2n":
            raise ValueError(f"expected a 'b2n' spec, got {spec.kind!r}")
        if not recompute and (hit := self.stored(spec)) is not None:
            return hit
        start = time.perf_counter()
        few = sample_fewshot(self.dataset(spec.dataset), spec.shots, spec.seed)
        base, novel = subsample_classes(few, "base"), subsample_classes(few, "novel")
        if not base.train:
            raise DatasetError(
                f"{spec.dataset} has no training images, so it cannot be a base-to-novel dataset; use one of "
                f"{', '.join(B2N_DATASETS)} (test-only datasets are ImageNet-transfer targets)"
            )
        method = self.build(spec)
        train_log = self.fit(method, base, spec)
        b = self.score(method, base, "base", spec.template, f"{spec.dataset} base", spec.protocol)
        n = self.score(method, novel, "novel", spec.template, f"{spec.dataset} novel", spec.protocol)
        metrics = {"base": b.accuracy, "novel": n.accuracy, "hm": harmonic_mean(b.accuracy, n.accuracy)}
        counts = {"train_images": len(base.train), "base_classes": len(base.classnames),
                  "novel_classes": len(novel.classnames), "base_test": b.total, "novel_test": n.total,
                  "eval_seconds": b.seconds + n.seconds}
        return self._record(spec, method, metrics, counts, train_log, start)

    def imagenet_transfer(self, spec: RunSpec, recompute: bool = False) -> dict[str, Any]:
        """Train on all ImageNet classes (16 shots); test ImageNet, the 10 targets (XD) and the 4 variants (DG)."""
        if spec.kind != "imagenet_transfer" or spec.dataset != "imagenet":
            raise ValueError("imagenet_transfer runs need kind='imagenet_transfer' and dataset='imagenet'")
        if not recompute and (hit := self.stored(spec)) is not None:
            return hit
        start = time.perf_counter()
        source = sample_fewshot(self.dataset("imagenet"), spec.shots, spec.seed)
        method = self.build(spec)
        train_log = self.fit(method, source, spec)
        metrics, counts = {}, {"train_images": len(source.train)}
        for name in ("imagenet", *XD_TARGETS, *DG_TARGETS):
            target = "base" if name == "imagenet" else "transfer"
            # ImageNet-A/-R keep their 200-class subset; the classifier is built over the classes they contain
            result = self.score(method, self.dataset(name), target, spec.template, name, spec.protocol)
            metrics[name] = result.accuracy
            counts[f"{name}_test"] = result.total
        metrics["xd_average"] = sum(metrics[n] for n in XD_TARGETS) / len(XD_TARGETS)
        metrics["dg_average"] = sum(metrics[n] for n in DG_TARGETS) / len(DG_TARGETS)
        return self._record(spec, method, metrics, counts, train_log, start)

    def zeroshot_benchmarks(
        self, datasets: Iterable[str] = DATASET_NAMES, template: str = "coop"
    ) -> list[dict[str, Any]]:
        """Zero-shot CLIP on the full test set of each benchmark (all classes): the room left to adapt."""
        method = build_method("zeroshot", self.backbone)
        rows = []
        for name in tqdm(list(datasets), desc="zero-shot", disable=not self.progress):
            splits = self.dataset(name)
            result = self.score(method, splits, "transfer", template, name)
            rows.append({"name": name, "num_classes": len(splits.classnames), "accuracy": result.accuracy,
                         "test_images": result.total, "chance": 100.0 / len(splits.classnames)})
        return rows

    def fingerprint(self, spec: RunSpec) -> dict[str, str]:
        """What decides the run's numbers besides its spec: the code computing it, the backbone's weights and the
        identity of data perlkit built itself."""
        return run_fingerprint(spec.method, self.backbone.weights_sha256(), self.profile.data_identity())

    def stored(self, spec: RunSpec) -> dict[str, Any] | None:
        """The run's stored result if it is current (made by this code on these weights), else None."""
        return self.store.get(spec, self.fingerprint(spec))

    def run(self, spec: RunSpec, recompute: bool = False, wait: bool = True) -> dict[str, Any] | None:
        """Dispatch a spec to its protocol, holding the store's lock on it so that two processes never compute it
        twice; with ``wait=False`` returns None at once when another process holds the run."""
        protocol = {"b2n": self.base_to_novel, "imagenet_transfer": self.imagenet_transfer}.get(spec.kind)
        if protocol is None:
            raise ValueError(f"unknown run kind {spec.kind!r}; expected 'b2n' or 'imagenet_transfer'")
        if not recompute and (hit := self.stored(spec)) is not None:
            return hit
        self.store.ensure_writable()  # before training, not after it
        with self.store.claim(spec, wait=wait) as claimed:
            if not claimed:
                return None
            return protocol(spec, recompute)  # re-checks the store: another process may have finished it

    def sweep(self, specs: Sequence[RunSpec], desc: str = "runs", recompute: bool = False) -> list[dict[str, Any]]:
        """Run many specs, reusing stored ones; a killed sweep resumes at the first missing run, and runs that
        another process holds are left to it and collected at the end."""
        results: dict[int, dict[str, Any]] = {}
        busy = []
        bar = tqdm(specs, desc=desc, disable=not self.progress)
        for index, spec in enumerate(bar):
            bar.set_postfix_str(f"{spec.method} {spec.dataset} s{spec.seed}")
            result = self.run(spec, recompute, wait=False)
            if result is None:
                busy.append(index)
            else:
                results[index] = result
        for index in busy:  # waits for the other process, then reads its result (or computes it if it died)
            results[index] = self.run(specs[index], recompute=False)
        return [results[i] for i in range(len(specs))]


# ---------------------------------------------------------------------- spec builders and tables
def b2n_specs(
    methods: Iterable[str],
    datasets: Iterable[str] = B2N_DATASETS,
    seeds: Iterable[int] = (1,),
    profile: str = "mini",
    options: dict[str, dict[str, Any]] | None = None,
    **common: Any,
) -> list[RunSpec]:
    """Specs for a base-to-novel grid (methods x datasets x seeds); ``options`` maps method -> constructor options."""
    options = options or {}
    return [
        RunSpec("b2n", m, d, seed=s, options=options.get(m, {}), profile=profile, **common)
        for m in methods for s in seeds for d in datasets
    ]


def transfer_specs(
    methods: Iterable[str], seeds: Iterable[int] = (1,), profile: str = "mini",
    options: dict[str, dict[str, Any]] | None = None, **common: Any,
) -> list[RunSpec]:
    """Specs for ImageNet-trained models (one per method and seed), shared by cross-dataset and DG tables."""
    options = options or {}
    return [
        RunSpec("imagenet_transfer", m, "imagenet", seed=s, options=options.get(m, {}), profile=profile, **common)
        for m in methods for s in seeds
    ]


def b2n_table(results: Iterable[dict[str, Any]], label_key: str = "method") -> pd.DataFrame:
    """Tidy base/novel/HM rows (one per run) from result payloads."""
    rows = []
    for r in results:
        spec = r["spec"]
        label = spec[label_key] if label_key in spec else r.get(label_key)
        rows.append({"method": label, "dataset": spec["dataset"], "seed": spec["seed"], **r["metrics"],
                     "params": r["trainable_params"], "train_seconds": r["train"].get("seconds", 0.0)})
    return pd.DataFrame(rows)


def b2n_summary(table: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Per-dataset means over seeds, then the paper's average row (mean of per-dataset HMs, not HM of means)."""
    per_dataset = table.groupby([by, "dataset"], sort=False)[["base", "novel", "hm"]].mean().reset_index()
    average = per_dataset.groupby(by, sort=False)[["base", "novel", "hm"]].mean().reset_index()
    average["dataset"] = "average"
    return pd.concat([per_dataset, average], ignore_index=True)


def transfer_table(results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Tidy accuracy rows (method, seed, dataset, accuracy) from ImageNet-transfer payloads."""
    rows = []
    for r in results:
        for name, acc in r["metrics"].items():
            rows.append({"method": r["spec"]["method"], "seed": r["spec"]["seed"], "dataset": name, "accuracy": acc})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- reasoning dynamics
@torch.no_grad()
def step_metrics(logits_per_step: list[torch.Tensor], labels: torch.Tensor) -> list[dict[str, float]]:
    """Accuracy, target confidence, Brier score and KL(p_k || p_0) per reasoning step (paper Figs. 4-6)."""
    p0 = logits_per_step[0].softmax(-1)
    onehot = torch.nn.functional.one_hot(labels, p0.shape[-1]).float()
    out = []
    for k, logits in enumerate(logits_per_step):
        p = logits.softmax(-1)
        kl = (p * (p.clamp_min(1e-12).log() - p0.clamp_min(1e-12).log())).sum(-1)
        out.append({
            "step": k,
            "accuracy": 100.0 * float((p.argmax(-1) == labels).float().mean()),
            "confidence": 100.0 * float(p.gather(1, labels[:, None]).mean()),
            "brier": float(((p - onehot) ** 2).sum(-1).mean()),
            "kl_from_step0": float(kl.mean()),
        })
    return out


def reasoning_dynamics(session: Session, spec: RunSpec) -> pd.DataFrame:
    """Per-step metrics of a trained PERL on base and novel test sets (trains it if no checkpoint is cached)."""
    if spec.method != "perl":
        raise ValueError("reasoning dynamics are defined for PERL only")
    method = trained_method(session, spec)
    few = sample_fewshot(session.dataset(spec.dataset), spec.shots, spec.seed)
    rows = []
    for subset in ("base", "novel"):
        per_step, labels = step_logits_on_test_set(session, method, subsample_classes(few, subset), spec.template)
        for row in step_metrics(per_step, labels):
            rows.append({"dataset": spec.dataset, "subset": subset, **row})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- trained models, looked inside
def trained_method(session: Session, spec: RunSpec) -> Method:
    """A base-to-novel run's trained model from its checkpoint, trained first (into the user's cache) when no
    checkpoint is stored: the repository ships only a few, and a result alone cannot be looked inside."""
    from perlkit.engine import load_checkpoint

    checkpoint = session.store.find_checkpoint(spec)
    if checkpoint is None:
        session.base_to_novel(spec, recompute=True)
        checkpoint = session.store.checkpoint_path(spec)
    method = session.build(spec)
    load_checkpoint(method, checkpoint)
    return method.eval()


def _test_loader(session: Session, splits: DatasetSplits):  # noqa: ANN202 - a DataLoader
    return make_loader(splits.test, build_transform(session.backbone.image_size, train=False),
                       session.profile.eval_batch_size, shuffle=False, num_workers=session.profile.num_workers)


@torch.no_grad()
def step_logits_on_test_set(
    session: Session, method: Method, splits: DatasetSplits, template: str = "coop"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A reasoning method's logits at every step (0 = zero-shot .. K) on a split's test images, with their labels:
    what the per-step metrics and the one-image explorer are computed from."""
    texts = method.step_classifiers(session.classes(method, splits, template))
    batches, labels = [], []
    for images, y in _test_loader(session, splits):
        batches.append([t.cpu() for t in method.step_logits(images.to(method.backbone.device), texts)])
        labels.append(y)
    return [torch.cat([batch[k] for batch in batches]) for k in range(len(batches[0]))], torch.cat(labels)


@torch.no_grad()
def logits_on_test_set(
    session: Session, method: Method, splits: DatasetSplits, target: str, template: str = "coop"
) -> torch.Tensor:
    """A method's logits on a split's test images (one row an image), to compare two models prediction by
    prediction where ``evaluate`` keeps only the accuracy."""
    classifier = method.classifier(session.classes(method, splits, template), target)
    return torch.cat([method.logits(images.to(method.backbone.device), classifier).cpu()
                      for images, _ in _test_loader(session, splits)])


@dataclass
class ZeroshotComparison:
    """How far a trained run's model moved: its weights from their start, its test logits from zero-shot CLIP's."""

    result: dict[str, Any]  # the run's stored result
    trained: Method
    weight_change: float  # ||theta - theta_0|| / ||theta_0|| over every trainable parameter
    predictions: pd.DataFrame  # per test set (base, novel): images, differing predictions, logit changes


def compare_with_zeroshot(session: Session, spec: RunSpec) -> ZeroshotComparison:
    """A trained base-to-novel run against its own start and zero-shot CLIP (CoOp prompts) on both test sets, for a
    method whose accuracy equals zero-shot CLIP's: did it train at all, and how far do its predictions move?"""
    trained = trained_method(session, spec)
    initial = session.build(spec)  # seeded as the run was: its start
    with torch.no_grad():
        pairs = zip(initial.trainable_parameters(), trained.trainable_parameters(), strict=True)
        moved = sum((p1 - p0).pow(2).sum() for (_, p0), (_, p1) in pairs).sqrt()
        size = sum(p.pow(2).sum() for _, p in initial.trainable_parameters()).sqrt()
    zero_shot = build_method("zeroshot", session.backbone)
    few = sample_fewshot(session.dataset(spec.dataset), spec.shots, spec.seed)
    rows = []
    for target in ("base", "novel"):
        split = subsample_classes(few, target)
        ours, theirs = (logits_on_test_set(session, model, split, target) for model in (trained, zero_shot))
        rows.append({"test set": target, "images": len(ours),
                     "predictions that differ": int((ours.argmax(1) != theirs.argmax(1)).sum()),
                     "largest logit change": float((ours - theirs).abs().max()),
                     "largest zero-shot logit": float(theirs.abs().max())})
    return ZeroshotComparison(session.base_to_novel(spec), trained, float(moved / size),
                              pd.DataFrame(rows).set_index("test set"))


def confidence_interval(values: Sequence[float]) -> float:
    """Half-width of a normal 95% interval over seeds (0 for a single seed)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return 1.96 * sd / math.sqrt(n)
