"""`perlkit mini calibrate`: zero-shot vs 16-shot linear probe on frozen features, beside the real bars."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from test_data_world import make_world

from perlkit.cli import main
from perlkit.experiments import ResultStore, RunSpec, Session
from perlkit.experiments import calibration as cal
from perlkit.profiles import Profile

DATASETS = ["eurosat", "oxford_pets", "imagenet"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cal") / "data"
    make_world(root, DATASETS)
    return root


@pytest.fixture()
def session(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Session:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))
    profile = Profile("mini", "tiny-clip", None, None, str(data_root), "cpu", 64, 0, "test profile")
    return Session(profile, progress=False, store=ResultStore("mini", tmp_path / "results"))


def _blobs(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.eye(4, 8) * 10
    x = torch.cat([c + torch.randn(n_per_class, 8, generator=gen) for c in centres])
    return x, torch.arange(4).repeat_interleave(n_per_class)


def test_probe_separates_blobs_deterministically() -> None:
    (x, y), (vx, vy), (tx, ty) = _blobs(16, 0), _blobs(4, 1), _blobs(50, 2)
    probe = cal.fit_linear_probe(x, y, vx, vy, 4)
    again = cal.fit_linear_probe(x, y, vx, vy, 4)
    assert torch.equal(probe.weight, again.weight) and torch.equal(probe.bias, again.bias)
    assert probe.weight_decay in cal.WEIGHT_DECAYS and probe.val_source == "val"
    assert probe.train_accuracy == 100.0 and probe.accuracy(tx, ty) > 95.0
    # the decay is the one that scores best on the validation shots (ties: the larger), refitted on train
    scores = {}
    for decay in cal.WEIGHT_DECAYS:
        w, b = cal._fit_logistic(x, y, 4, decay)
        scores[decay] = cal.LinearProbe(w, b, decay, 0, 0, "val").accuracy(vx, vy)
    assert probe.weight_decay == max(d for d in scores if scores[d] == max(scores.values()))


def test_probe_is_fitted_to_convergence() -> None:
    """The probe's optimum, not an iteration budget, decides it: with the smallest decay (the slowest fit, which once
    gave one image more on another CPU) the gradient ends under the tolerance, and a fit cut short says so."""
    x, y = _blobs(16, 0)
    decay = min(cal.WEIGHT_DECAYS)
    weight, bias = (t.requires_grad_() for t in cal._fit_logistic(x, y, 4, decay))
    xn = torch.nn.functional.normalize(x.double(), dim=-1)
    loss = torch.nn.functional.cross_entropy(xn @ weight.t() + bias, y) + 0.5 * decay * weight.pow(2).sum()
    loss.backward()
    assert max(weight.grad.abs().max(), bias.grad.abs().max()) <= 100 * cal.PROBE_GRAD_TOLERANCE
    with pytest.warns(RuntimeWarning, match="not converged"):
        cal._fit_logistic(x, y, 4, decay, max_iter=3)


def test_probe_without_validation_holds_out_training_shots() -> None:
    x, y = _blobs(16, 0)
    probe = cal.fit_linear_probe(x, y, x[:0], y[:0], 4)
    assert probe.val_source == "held-out train shots" and probe.train_accuracy == 100.0


def test_spearman() -> None:
    assert cal.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert cal.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert cal.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)  # average ranks for ties


def test_real_columns() -> None:
    assert cal.perl_batch_size() == 4
    # base classes x 16 shots / 4: the DTD 96, Flowers 204, Cars 392
    assert [cal.real_steps_one_epoch(d) for d in ("dtd", "oxford_flowers", "stanford_cars", "imagenet")] == \
        [96, 204, 392, 2000]
    real = cal.real_zeroshot_base()
    assert len(real) == 11 and real["eurosat"] == 56.48 and real["caltech101"] == 96.84


def test_calibration_agrees_with_the_protocols(session: Session) -> None:
    report = cal.calibrate(session, DATASETS, progress=False)
    assert report["profile"] == "mini" and report["label"] == "test profile"
    for name in DATASETS:
        row = report["benchmarks"][name]
        for key in ("zeroshot_all", "zeroshot_base", "probe_base", "headroom", "steps_one_epoch",
                    "real_zeroshot_base", "real_steps_one_epoch"):
            assert key in row
        assert row["headroom"] == pytest.approx(row["probe_base"] - row["zeroshot_base"])
        # zero-shot base is exactly the base-to-novel protocol's zero-shot base accuracy
        zeroshot = session.base_to_novel(RunSpec("b2n", "zeroshot", name, profile="mini"))
        assert row["zeroshot_base"] == pytest.approx(zeroshot["metrics"]["base"], abs=1e-9)
    zs_all = {r["name"]: r["accuracy"] for r in session.zeroshot_benchmarks(DATASETS)}
    assert {n: report["benchmarks"][n]["zeroshot_all"] for n in DATASETS} == pytest.approx(zs_all, abs=1e-9)
    # one epoch's steps are the optimiser steps PERL's training loop takes
    perl = session.base_to_novel(RunSpec("b2n", "perl", "eurosat", options={"steps": 1}))
    assert report["benchmarks"]["eurosat"]["steps_one_epoch"] == len(perl["train"]["steps"]) == 12
    assert report["benchmarks"]["imagenet"]["probe_val_source"] == "held-out train shots"  # ImageNet has no val
    assert report["benchmarks"]["eurosat"]["real_steps_one_epoch"] == 20
    assert set(report["summary"]) == {"headroom", "zeroshot_within_20", "zeroshot_spearman", "training_budget",
                                      "all_pass"}
    table = cal.calibration_table(report)
    assert list(table.index) == ["EuroSAT", "OxfordPets", "ImageNet"] and "mini probe base" in table
    assert len(cal.bars_table(report)) == 4


def test_second_call_reads_the_cache(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    first = cal.calibrate(session, ["eurosat"], progress=False)
    assert list((cal.cache_root() / "calibration").glob("eurosat-*.pt"))
    monkeypatch.setattr(cal, "_calibrate", lambda *a, **k: pytest.fail("recomputed a cached row"))
    assert cal.calibrate(session, ["eurosat"], progress=False) == first


def test_cached_features_are_used(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    full = session.dataset("eurosat")
    items = full.test[:3]
    features = cal.frozen_image_features(session, "eurosat", str(session.data_root), items, progress=False)
    monkeypatch.setattr(session.backbone, "encode", lambda *a, **k: pytest.fail("encoded again"))
    again = cal.frozen_image_features(session, "eurosat", str(session.data_root), items, progress=False)
    assert torch.equal(features, again) and features.shape == (3, session.backbone.embed_dim)


def _row(name: str, zs: float, probe: float, real: float, steps: int, real_steps: int) -> cal.Calibration:
    return cal.Calibration(name, 10, 5, 80, zs, zs, probe, 100.0, 90.0, 1e-3, "val", probe - zs, steps, real, 5,
                           real_steps)


def test_summary_bars() -> None:
    good = [_row(f"d{i}", 40 + 4 * i, 55 + 4 * i, 45 + 4 * i, 100, 110) for i in range(11)]
    summary = cal.calibration_summary(good)
    assert summary["all_pass"] and summary["headroom"]["value"] == pytest.approx(15.0)
    assert summary["zeroshot_spearman"]["value"] == pytest.approx(1.0)
    bad = good[:6] + [_row(f"e{i}", 60, 62, 10, 30, 100) for i in range(5)]
    summary = cal.calibration_summary(bad)
    assert summary["headroom"]["count"] == 6 and not summary["headroom"]["pass"]  # +5 on only 6 of 11
    assert summary["zeroshot_within_20"]["value"] == 6 and not summary["zeroshot_within_20"]["pass"]
    assert not summary["training_budget"]["pass"] and len(summary["training_budget"]["outside"]) == 5
    exempt = good[:10] + [_row("imagenet", 40, 60, 45, 200, 2000)]  # ImageNet may stay smaller
    assert cal.calibration_summary(exempt)["training_budget"]["pass"]


def test_cli_json(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))
    assert main(["mini", "calibrate", "--json", "--data-root", str(data_root), "--datasets", "eurosat"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert set(report["benchmarks"]) == {"eurosat"} and "summary" in report and "mini" in report["label"]
    assert report["seed"] == cal.SEED
    assert main(["mini", "calibrate", "--json", "--seed", "2", "--data-root", str(data_root), "--datasets",
                 "eurosat"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["seed"] == 2 and other["benchmarks"]["eurosat"]["zeroshot_base"] == \
        report["benchmarks"]["eurosat"]["zeroshot_base"]  # zero-shot does not depend on the shots drawn
    assert main(["mini", "calibrate", "--data-root", str(data_root), "--datasets", "imagenet_a"]) == 2
    assert "base-to-novel" in capsys.readouterr().err


def test_view_robustness_as_rendered_is_the_frozen_zero_shot_of_the_training_shots(session: Session) -> None:
    from perlkit.data import build_transform, sample_fewshot, subsample_classes

    row = cal.view_robustness(session, "eurosat", draws=2)
    assert set(row) == {"dataset", "images", "as_rendered", *cal.TRAINING_VIEWS, "zeroshot_base", "probe_base",
                        *(f"probe_{name}" for name in cal.TRAINING_VIEWS)}
    base = subsample_classes(sample_fewshot(session.dataset("eurosat"), cal.SHOTS, cal.SEED), "base")
    assert row["images"] == len(base.train)
    # as rendered: the calibration's own zero-shot on frozen features, here of the training shots
    features = cal.frozen_image_features(session, "eurosat", str(session.data_root), base.train, progress=False)
    shots_as_test = dataclasses.replace(base, test=base.train)
    assert row["as_rendered"] == pytest.approx(cal._zeroshot_accuracy(session, shots_as_test, features, "coop"),
                                               abs=1e-9)
    # the crops are random but drawn from their own stream: same numbers again, whatever the global RNG did
    torch.manual_seed(123)
    again = cal.view_robustness(session, "eurosat", draws=2)
    assert again == row
    size = session.backbone.image_size
    shifted = cal._zeroshot_on(session, base.train, torch.zeros(len(base.classnames), session.backbone.embed_dim),
                               build_transform(size, train=True, crop_scale=(0.08, 1.0)), 0)
    labels = torch.tensor([d.label for d in base.train])
    assert shifted == pytest.approx(100.0 * float((labels == 0).float().mean()))  # all-zero text: argmax is class 0
    table = cal.view_robustness_table([row, again])
    assert list(table.index) == ["EuroSAT", "EuroSAT", "mean"]
    calibration = cal.calibrate_dataset(session, "eurosat", progress=False)
    assert (row["zeroshot_base"], row["probe_base"]) == (calibration.zeroshot_base, calibration.probe_base)


def test_view_probe_is_the_calibration_probe_fitted_on_the_views(session: Session, monkeypatch) -> None:
    """Views that equal the shots as rendered (any number of draws) give the calibration's own probe: the view
    probe repeats each shot's label once a draw and is tested on the same base test images."""
    from perlkit.data import build_transform

    size = session.backbone.image_size
    monkeypatch.setattr(cal, "_view_features", lambda s, items, transform, draw_seed: cal._encode_images(
        s, items, build_transform(size, train=False), 0, "views", progress=False))
    row = cal.view_robustness(session, "eurosat", draws=3)
    for name in cal.TRAINING_VIEWS:
        assert row[name] == pytest.approx(row["as_rendered"], abs=1e-9)
        assert row[f"probe_{name}"] == pytest.approx(row["probe_base"], abs=1e-6)


def test_adaptation_compares_each_rivals_default_recipe_with_zero_shot(session: Session) -> None:
    """The bar's numbers are the store's ordinary runs: zero-shot as in the calibration, each rival under
    protocol "default"; a second call trains nothing."""
    report = cal.adaptation(session, methods=["mma"], datasets=["eurosat"])
    calibration = cal.calibrate(session, ["eurosat"], progress=False)["benchmarks"]["eurosat"]
    assert report["zeroshot_base"]["eurosat"] == pytest.approx(calibration["zeroshot_base"], abs=1e-9)
    mma = session.stored(RunSpec("b2n", "mma", "eurosat", profile="mini", protocol="default"))
    assert mma is not None and mma["train"]["config"]["epochs"] > 1  # MMA's own recipe, not the one-epoch protocol
    row = report["methods"]["mma"]
    assert row["base"] == {"eurosat": mma["metrics"]["base"]}
    assert row["mean_gain"] == pytest.approx(mma["metrics"]["base"] - calibration["zeroshot_base"])
    assert row["pass"] == (row["mean_gain"] >= cal.ADAPTATION_BAR) and report["all_pass"] == row["pass"]
    table = cal.adaptation_table(report)
    assert list(table.index) == ["EuroSAT", "mean", "gain over zero-shot"]
    assert table.loc["gain over zero-shot", "mma"] == pytest.approx(row["mean_gain"])
    with pytest.raises(ValueError, match="leave it out"):
        cal.adaptation(session, methods=["zeroshot"], datasets=["eurosat"])
    with pytest.raises(ValueError, match="base-to-novel"):
        cal.adaptation(session, methods=["mma"], datasets=["imagenet_a"])


def test_adaptation_summary_passes_on_the_mean_gain_only() -> None:
    zeroshot = {"a": 50.0, "b": 60.0}
    summary = cal.adaptation_summary(zeroshot, {"up": {"a": 58.0, "b": 63.0}, "flat": {"a": 51.0, "b": 59.0}})
    assert summary["methods"]["up"]["gain"] == {"a": 8.0, "b": 3.0}  # +3 on b, but the mean gain is +5.5
    assert summary["methods"]["up"]["mean_gain"] == 5.5 and summary["methods"]["up"]["pass"]
    assert summary["methods"]["flat"]["mean_gain"] == 0.0 and not summary["methods"]["flat"]["pass"]
    assert not summary["all_pass"] and not cal.adaptation_summary(zeroshot, {})["all_pass"]
