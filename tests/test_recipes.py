"""Every method's recipe as its official code runs it (protocol='default') and as perlkit always ran it ('unified').

Expected learning rates are written out with the config line they come from: yunncheng/MMRL (configs/trainers/MMRL and
MMRLpp, scripts/mmrl(pp)), ZjjConan/Multi-Modal-Adapter (configs/trainers/MultiModalAdapter) and Dassl.pytorch
(dassl/optim/lr_scheduler.py: CosineAnnealingLR(T_max=MAX_EPOCH) wrapped by ConstantWarmupScheduler, WARMUP_RECOUNT
True, stepped once after the last batch of each epoch by the trainers' forward_backward). Dassl's per-epoch lr is
    epoch < W: WARMUP_CONS_LR;   epoch >= W: LR * (1 + cos(pi * (epoch - W) / MAX_EPOCH)) / 2
(checked here against a replay of those schedulers in torch: MMRL vit_b16.yaml gives 1e-05, 0.001, 0.000976, ...).
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn

from perlkit.backbone import FrozenCLIP
from perlkit.data.core import DatasetSplits, Datum
from perlkit.engine import (
    UNIFIED_CROP_SCALE,
    EvalResult,
    TrainConfig,
    TrainHistory,
    protocol_crop_scale,
    protocol_template,
    recipe,
    train,
)
from perlkit.experiments import ResultStore, RunSpec, Session
from perlkit.methods import Method, TrainOutput, get_method_class
from perlkit.methods.mmrlpp import TRANSFER_BETA
from perlkit.profiles import Profile
from perlkit.report import recipe_sources, recipe_table, unified_overrides

METHODS = ("perl", "mmrl", "mmrlpp", "mma", "rmma")


def _cos(lr: float, k: int, t_max: int) -> float:
    """Dassl's cosine at successor epoch k of T_max (eta_min 0)."""
    return lr * (1 + math.cos(math.pi * k / t_max)) / 2


class _Probe(Method):
    """One trainable scalar: the engine's schedule without a network's cost."""

    name = "probe"

    def __init__(self, backbone: FrozenCLIP) -> None:
        super().__init__(backbone)
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor, labels: torch.Tensor, classes) -> TrainOutput:
        loss = (self.weight - 1).pow(2).sum()
        return TrainOutput(loss, loss.detach()[None], {})


def _lrs(backbone: FrozenCLIP, cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    batch = (torch.zeros(1, 3, 4, 4), torch.zeros(1, dtype=torch.long))
    history = train(_Probe(backbone), lambda epoch: [batch] * steps_per_epoch, None, cfg, progress=False)
    return [s["lr"] for s in history.steps]


# (method, dataset, task, epochs, batch, lr at the first / middle / last step), two steps an epoch
OFFICIAL_SCHEDULES = [
    # MMRL configs/trainers/MMRL/vit_b16.yaml:3 BATCH_SIZE 4, :18 LR 0.001, :19 MAX_EPOCH 10, :21 WARMUP_EPOCH 1,
    # :23 WARMUP_CONS_LR 1e-5 -> epoch 0 at 1e-5, epoch 5 = cosine epoch 4 of 10, epoch 9 = cosine epoch 8 of 10
    ("mmrl", "dtd", "b2n", 10, 4, (1e-5, 6.545084971874737e-04, 9.549150281252633e-05)),
    # MMRL vit_b16_imagenet.yaml:3 BATCH_SIZE 32, :19 MAX_EPOCH 5, :21 WARMUP_EPOCH 1 (base2new_train.sh:9-13)
    ("mmrl", "imagenet", "b2n", 5, 32, (1e-5, 9.045084971874737e-04, 3.4549150281252633e-04)),
    # MMRL vit_b16_cross_datasets.yaml:3 BATCH_SIZE 32, :19 MAX_EPOCH 1, :21 WARMUP_EPOCH 0 -> 1e-3 throughout
    ("mmrl", "imagenet", "cross", 1, 32, (1e-3, 1e-3, 1e-3)),
    # MMRL vit_b16_few_shot.yaml:3 BATCH_SIZE 32, :19 MAX_EPOCH 50, :21 WARMUP_EPOCH 1
    ("mmrl", "dtd", "few_shot", 50, 32, (1e-5, 5.313952597646568e-04, 3.942649342761117e-06)),
    # MMRL scripts/mmrl/few_shot.sh:12-16: ImageNet trains with vit_b16_imagenet.yaml
    ("mmrl", "imagenet", "few_shot", 5, 32, (1e-5, 9.045084971874737e-04, 3.4549150281252633e-04)),
    # MMRL configs/trainers/MMRLpp/vit_b16.yaml: the same lines as MMRL's
    ("mmrlpp", "dtd", "b2n", 10, 4, (1e-5, 6.545084971874737e-04, 9.549150281252633e-05)),
    ("mmrlpp", "imagenet", "b2n", 5, 32, (1e-5, 9.045084971874737e-04, 3.4549150281252633e-04)),
    ("mmrlpp", "imagenet", "cross", 1, 32, (1e-3, 1e-3, 1e-3)),
    # MMRLpp/vit_b16_few_shot.yaml:3 BATCH_SIZE 32, :18 LR 0.002, :19 MAX_EPOCH 100, :21 WARMUP_EPOCH 1, :23 1e-5
    ("mmrlpp", "dtd", "few_shot", 100, 32, (1e-5, 1.0314107590781282e-03, 1.9732715717284413e-06)),
    # scripts/mmrlpp/few_shot.sh:12-16: ImageNet few-shot uses MMRLpp/vit_b16_imagenet.yaml (:18 LR 0.001, :19 5)
    ("mmrlpp", "imagenet", "few_shot", 5, 32, (1e-5, 9.045084971874737e-04, 3.4549150281252633e-04)),
    # MMA configs/trainers/MultiModalAdapter/vit_b16_ep5.yaml:3 BATCH_SIZE 16, :17 LR 0.0015, :18 MAX_EPOCH 5,
    # :20 WARMUP_EPOCH 0 -> epoch 2 = cosine epoch 2 of 5, epoch 4 = cosine epoch 4 of 5
    ("mma", "dtd", "b2n", 5, 16, (1.5e-3, 9.817627457812106e-04, 1.432372542187895e-04)),
    # MMA vit_b16_ep5_imnet.yaml:3 BATCH_SIZE 128 (ImageNet B2N, and the cross-dataset source)
    ("mma", "imagenet", "b2n", 5, 128, (1.5e-3, 9.817627457812106e-04, 1.432372542187895e-04)),
    ("mma", "imagenet", "cross", 5, 128, (1.5e-3, 9.817627457812106e-04, 1.432372542187895e-04)),
    # R-MMA: summary lr 1e-3 (AdamW); epochs, batch and schedule are perlkit's choice (MMA's vit_b16_ep5.yaml)
    ("rmma", "dtd", "b2n", 5, 16, (1e-3, 6.545084971874737e-04, 9.549150281252633e-05)),
    # PERL App. A: AdamW, lr 1e-4, batch 4, one epoch, no schedule stated (constant)
    ("perl", "dtd", "b2n", 1, 4, (1e-4, 1e-4, 1e-4)),
    ("perl", "imagenet", "cross", 1, 4, (1e-4, 1e-4, 1e-4)),
]


@pytest.mark.parametrize(("name", "dataset", "task", "epochs", "batch", "expected"), OFFICIAL_SCHEDULES)
def test_default_recipe_runs_the_official_schedule(
    tiny_backbone: FrozenCLIP, name: str, dataset: str, task: str, epochs: int, batch: int, expected: tuple
) -> None:
    cfg = recipe(get_method_class(name), "default", dataset, task)
    assert (cfg.epochs, cfg.batch_size) == (epochs, batch)
    lrs = _lrs(tiny_backbone, cfg, steps_per_epoch=2)
    assert len(lrs) == 2 * epochs
    first, middle, last = lrs[0], lrs[len(lrs) // 2], lrs[-1]
    assert (first, middle, last) == pytest.approx(expected, rel=1e-9)
    assert lrs[0] == lrs[1]  # Dassl steps the scheduler once an epoch, not every batch
    if cfg.scheduler == "cosine" and epochs > 2:
        # the formula in the module docstring, at every epoch
        w, peak = cfg.warmup_epochs, cfg.lr
        official = [1e-5 if e < w else _cos(peak, e - w, epochs) for e in range(epochs)]
        assert lrs[::2] == pytest.approx(official, rel=1e-9)


@pytest.mark.parametrize("name", METHODS)
def test_unified_recipe_keeps_the_shipped_per_step_schedule(tiny_backbone: FrozenCLIP, name: str) -> None:
    """The unified protocol is what produced the shipped results: one epoch, no warm-up, a per-step cosine."""
    cls = get_method_class(name)
    cfg = recipe(cls, "unified")
    assert (cfg.epochs, cfg.warmup_epochs, cfg.warmup_steps, cfg.schedule_unit) == (1, 0, None, "step")
    lr = cls.recipe["lr"]
    lrs = _lrs(tiny_backbone, cfg, steps_per_epoch=4)
    if cfg.scheduler == "constant":  # PERL
        assert lrs == [lr] * 4
    else:  # lr * (1 + cos(pi * step / 4)) / 2: first, middle, last step
        assert (lrs[0], lrs[2], lrs[3]) == pytest.approx((lr, lr / 2, lr * 0.14644660940672627), rel=1e-12)


def test_a_recipes_zero_warmup_means_zero() -> None:
    """The old `warmup_steps or warmup_epochs * steps` turned MMRL's cross-dataset 0 into a whole epoch at 1e-5."""
    assert TrainConfig(warmup_steps=0, warmup_epochs=1).warmup_length(50) == 0
    assert TrainConfig(warmup_epochs=1).warmup_length(50) == 50
    assert TrainConfig(warmup_steps=3).warmup_length(50) == 3
    assert recipe(get_method_class("mmrl"), "default", "imagenet", "cross").warmup_epochs == 0
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(schedule_unit="epoch", warmup_steps=2)
    with pytest.raises(ValueError, match="schedule_unit"):
        TrainConfig(schedule_unit="batch")


# ------------------------------------------------------------------ the session: one test world of PNGs
CLASSNAMES = ["red circle", "blue_square", "green star"]


def _items(folder, n: int) -> list[Datum]:
    torch.manual_seed(0)
    items = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray((torch.rand(40, 48, 3) * 255).to(torch.uint8).numpy()).save(path)
        items.append(Datum(str(path), i % 3, CLASSNAMES[i % 3]))
    return items


@pytest.fixture()
def session(tmp_path, monkeypatch, tiny_backbone: FrozenCLIP) -> Session:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))
    profile = Profile("mini", "tiny-clip", None, None, str(tmp_path), "cpu", 64, 0, "test profile")
    session = Session(profile, progress=False, store=ResultStore("mini", tmp_path / "results"))
    session._backbone = tiny_backbone
    return session


def _splits(name: str, items: list[Datum], classnames: list[str] = CLASSNAMES) -> DatasetSplits:
    return DatasetSplits(name, "", classnames, items, [], items, "{}")


def test_mmrl_cross_dataset_default_trains_at_1e3_from_the_first_step(session: Session, tmp_path) -> None:
    """Acceptance (issue 20): vit_b16_cross_datasets.yaml:18 LR 0.001, :19 MAX_EPOCH 1, :21 WARMUP_EPOCH 0."""
    splits = _splits("imagenet", _items(tmp_path, 70))
    spec = RunSpec("imagenet_transfer", "mmrl", "imagenet", protocol="default")
    log = session.fit(session.build(spec), splits, spec)
    assert [s["lr"] for s in log["steps"]] == [1e-3, 1e-3, 1e-3]  # 70 images, batch 32 (:3 BATCH_SIZE 32)
    assert log["config"]["warmup_epochs"] == 0 and log["config"]["schedule_unit"] == "epoch"
    # the unified protocol keeps the shipped behaviour: batch 4, a cosine decaying every step from 1e-3
    unified = RunSpec("imagenet_transfer", "mmrl", "imagenet")
    lrs = [s["lr"] for s in session.fit(session.build(unified), splits, unified)["steps"]]
    assert len(lrs) == 18 and lrs[0] == 1e-3 and lrs[-1] == pytest.approx(_cos(1e-3, 17, 18), rel=1e-12)


@pytest.mark.parametrize(("name", "lrs", "losses"), [
    # recorded before issue 20's changes (the code behind the shipped results), 22 images, batch 4
    ("perl", [1e-4] * 6, [0.7061190009117126, 1.3242331743240356, 2.1623072624206543]),
    ("mmrl", [0.001, 0.0009330127018922195, 0.00075, 0.0005, 0.0002500000000000001, 6.698729810778065e-05],
     [5.164183616638184, 9.692145347595215, 10.242507934570312]),
    ("mma", [0.0015, 0.00075], [1.4786967039108276, 1.8697768449783325]),
])
def test_unified_training_is_unchanged(session: Session, tmp_path, name: str, lrs: list, losses: list) -> None:
    """Same lr at every step (bit for bit) and the same first losses as before the default recipes changed."""
    spec = RunSpec("b2n", name, "dtd")
    log = session.fit(session.build(spec), _splits("dtd", _items(tmp_path, 22)), spec)
    assert [s["lr"] for s in log["steps"]] == lrs
    assert [s["loss"] for s in log["steps"]][: len(losses)] == pytest.approx(losses, rel=1e-5)


# ------------------------------------------------------------------ prompts and augmentation, per method and protocol
PROMPTS = {  # (dataset, class name) -> (CoOp's template as CUSTOM_TEMPLATES, MMA's TEXT_CTX_INIT "a photo of a" + ".")
    ("oxford_pets", "great_pyrenees"): ("a photo of a great pyrenees, a type of pet.", "a photo of a great pyrenees."),
    ("dtd", "banded"): ("banded texture.", "a photo of a banded."),
    ("eurosat", "Sea or Lake"): ("a centered satellite photo of Sea or Lake.", "a photo of a Sea or Lake."),
    ("ucf101", "Apply_Eye_Makeup"): ("a photo of a person doing Apply Eye Makeup.", "a photo of a Apply Eye Makeup."),
    ("imagenet", "tench"): ("a photo of a tench.", "a photo of a tench."),
}
OWN = {"zeroshot": 0, "perl": 0, "mmrl": 0, "mmrlpp": 0, "mma": 1, "rmma": 1}  # index into PROMPTS' pairs
CROPS = {"perl": (0.5, 1.0), "mmrl": (0.5, 1.0), "mmrlpp": (0.5, 1.0), "mma": (0.08, 1.0), "rmma": (0.08, 1.0)}


@pytest.mark.parametrize("name", OWN)
@pytest.mark.parametrize("protocol", ["unified", "default"])
def test_prompts_per_method_and_protocol(session: Session, name: str, protocol: str) -> None:
    method = session.build(RunSpec("b2n", name, "dtd"))
    for (dataset, classname), pair in PROMPTS.items():
        classes = session.classes(method, _splits(dataset, [], [classname]), "coop", protocol)
        assert classes.prompts == [pair[OWN[name] if protocol == "default" else 0]]
    assert protocol_template(method, protocol) == ("single" if protocol == "default" and OWN[name] else "coop")


@pytest.mark.parametrize("name", CROPS)
@pytest.mark.parametrize("protocol", ["unified", "default"])
def test_training_crop_prompts_and_recipe_reach_the_loop(
    session: Session, monkeypatch, name: str, protocol: str
) -> None:
    """Session.fit hands the protocol's crop scale, prompts and recipe to the transform and the training loop."""
    import perlkit.experiments.protocols as protocols

    seen: dict = {}
    real_transform = protocols.build_transform

    def transform(size, train, **kwargs):
        seen["crop"] = kwargs.get("crop_scale")
        return real_transform(size, train, **kwargs)

    def fake_train(method, batches, classes, cfg, **kwargs):
        seen.update(prompts=classes.prompts, cfg=cfg)
        return TrainHistory()

    monkeypatch.setattr(protocols, "build_transform", transform)
    monkeypatch.setattr(protocols, "train", fake_train)
    spec = RunSpec("b2n", name, "oxford_pets", protocol=protocol)
    session.fit(session.build(spec), _splits("oxford_pets", [], ["great_pyrenees"]), spec)
    crop = CROPS[name] if protocol == "default" else UNIFIED_CROP_SCALE
    assert seen["crop"] == crop == protocol_crop_scale(get_method_class(name), protocol)
    assert seen["prompts"] == [PROMPTS[("oxford_pets", "great_pyrenees")][OWN[name] if protocol == "default" else 0]]
    assert seen["cfg"] == recipe(get_method_class(name), protocol, "oxford_pets", "b2n", seed=1)


@pytest.mark.parametrize("protocol", ["unified", "default"])
def test_mmrlpp_per_target_beta_only_under_default(session: Session, monkeypatch, protocol: str) -> None:
    """Official test-time beta per cross-dataset target (trainers/config.py, task CD), the trained one restored."""
    import perlkit.experiments.protocols as protocols

    seen = []

    def fake_evaluate(method, loader, classes, target, **kwargs):
        seen.append((target, method.config.beta))
        return EvalResult(0.0, 0, 1, 0.0)

    monkeypatch.setattr(protocols, "evaluate", fake_evaluate)
    method = session.build(RunSpec("imagenet_transfer", "mmrlpp", "imagenet", protocol=protocol))
    assert method.config.beta == 0.9
    for dataset, target in (("imagenet", "base"), ("eurosat", "transfer"), ("food101", "transfer"),
                            ("imagenet_sketch", "transfer"), ("dtd", "transfer")):
        session.score(method, _splits(dataset, []), target, "coop", dataset, protocol)
    # trainers/config.py, task CD: ImageNet 0.9, EuroSAT 0.3, Food101 0.3, ImageNetSketch 0.7, DTD 0.5
    official = [0.9, 0.3, 0.3, 0.7, 0.5] if protocol == "default" else [0.9] * 5
    assert [beta for _, beta in seen] == official
    assert [0.9, 0.3, 0.3, 0.7, 0.5] == [TRANSFER_BETA[d] for d in ("imagenet", "eurosat", "food101",
                                                                    "imagenet_sketch", "dtd")]
    assert method.config.beta == 0.9  # restored after each target


def test_options_for_changes_no_parameter(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    """A target's beta changes the class embeddings of the same trained weights, and only while it is set."""
    _, _, prompts = tiny_batch
    method = get_method_class("mmrlpp")(tiny_backbone)
    classes = method.class_set(prompts)
    trained = method.classifier(classes, "transfer").text
    with method.options_for(beta=0.3):
        assert method.config.beta == 0.3
        other = method.classifier(classes, "transfer").text
    assert method.config.beta == 0.9 and not torch.allclose(trained, other)
    assert torch.equal(method.classifier(classes, "transfer").text, trained)


# ------------------------------------------------------------------ the method contract and the book's table
def test_every_method_states_its_contract() -> None:
    for name in (*METHODS, "zeroshot"):
        cls = get_method_class(name)
        assert isinstance(cls.recipe, dict) and set(cls.recipe) <= set(TrainConfig.__dataclass_fields__)
        assert cls.own_template in ("coop", "single") and len(cls.crop_scale) == 2
        assert cls.dataset_options("dtd", "b2n") is not None and isinstance(cls.dataset_recipe("dtd", "b2n"), dict)
    assert get_method_class("perl").recipe == {"epochs": 1, "lr": 1e-4, "batch_size": 4, "optimizer": "adamw",
                                               "weight_decay": 0.01, "scheduler": "constant"}


def test_recipe_table_and_unified_overrides() -> None:
    table = recipe_table(["zeroshot", *METHODS])
    assert "zeroshot" not in set(table["method"])
    row = table.set_index(["method", "protocol", "setting"])
    assert row.loc[("mmrl", "default", "cross-dataset (ImageNet)")][["epochs", "lr", "batch", "warm-up"]].tolist() == [
        1, "0.001", 32, "none"]
    assert row.loc[("mmrl", "default", "base-to-novel")]["warm-up"] == "1 epoch at 1e-05"
    assert row.loc[("mmrlpp", "default", "few-shot, ImageNet")][["epochs", "lr", "batch"]].tolist() == [5, "0.001", 32]
    mma = row.loc[("mma", "default", "base-to-novel")]
    assert (mma["template"], mma["crop scale"], mma["schedule"]) == ('"a photo of a {}."', "(0.08, 1)",
                                                                     "cosine, per epoch")
    assert "vit_b16_ep5.yaml:3" in mma["source"]
    unified = row.loc[("mma", "unified", "all")]
    assert (unified["epochs"], unified["template"], unified["crop scale"], unified["schedule"]) == (
        1, "CoOp per dataset", "(0.5, 1)", "cosine, per step")
    assert set(table[table["protocol"] == "unified"]["setting"]) == {"all"}
    notes = unified_overrides(["zeroshot", *METHODS])
    assert set(notes) == {"mmrl", "mmrlpp", "mma", "rmma"}  # PERL's own recipe is the unified one
    assert 'template "a photo of a {}." -> CoOp per dataset' in notes["mma"]
    assert "crop scale (0.08, 1) -> (0.5, 1)" in notes["mma"]
    assert "test-time beta" in notes["mmrlpp"] and "warm-up 1 epoch at 1e-05" in notes["mmrl"]
    assert "per-dataset reg_weight, rep_dim -> reg_weight 1, rep_dim 512 everywhere" in notes["mmrl"]
    assert "per-dataset beta, reg_weight -> beta 0.9, reg_weight 1 everywhere" in notes["mmrlpp"]


def test_recipe_sources_cite_every_part() -> None:
    text = recipe_sources(["zeroshot", "mmrl", "mma"], {"mmrl": "MMRL", "mma": "MMA"})
    lines = text.splitlines()
    assert lines[0].startswith("* every method, unified protocol: PERL paper App. D")
    assert "* **MMRL**, default protocol:" in lines and "* **MMA**, default protocol:" in lines
    assert "  * cross-dataset (ImageNet): MMRL configs/trainers/MMRL/vit_b16_cross_datasets.yaml:3 (batch 32), " \
        ":19 (1 epoch), :21 (WARMUP_EPOCH 0)" in lines
    assert any(line.startswith("  * crop scale: MMA configs set no RRCROP_SCALE") for line in lines)
    assert not any("zeroshot" in line for line in lines)
