"""The GPU paths, checked on a CPU: bf16 autocast, methods on their backbone's device, encoders of unequal depth.

Issue 12: on CUDA every trainable method crashed through ``Session`` (methods left on the CPU; R-MMA's
``mat1 and mat2 must have the same dtype`` is the same bug seen through autocast, which casts only CUDA tensors),
``steps=0`` crashed, and ViT-L/14 (24 vision, 12 text blocks) was refused. These tests fail on a CPU-only machine
when any of that comes back: autocast runs as ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the engine
(which autocasts on CUDA only, so CPU numbers stay bit-identical), and the ``meta`` device stands in for CUDA.
"""

from __future__ import annotations

import logging
import math
import traceback
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CustomTextCLIP
from torch.overrides import TorchFunctionMode

import perlkit
from perlkit.backbone import BackboneError, FrozenCLIP, create_backbone
from perlkit.engine import TrainConfig, autocast_context, evaluate, train
from perlkit.experiments import Session
from perlkit.experiments.store import RunSpec
from perlkit.methods import build_method, list_methods
from perlkit.profiles import get_profile

METHODS = list_methods()
TRAINABLE = [m for m in METHODS if m != "zeroshot"]
#: every method with its defaults, plus PERL's other code paths: multi-depth, vision only, chunked text refinement
AUTOCAST_CASES = [(m, {}) for m in METHODS] + [
    ("perl", {"split": [3, 7, 11], "layer_specific": True, "step_specific": True}),
    ("perl", {"modalities": "vision"}),
    ("perl", {"text_chunk_size": 2}),
]
PACKAGE_DIR = str(Path(perlkit.__file__).resolve().parent)


def _one_batch(images: torch.Tensor, labels: torch.Tensor):
    return lambda epoch: [(images, labels)]


def _spy_logits(method) -> list[torch.Tensor]:
    """Record every ``method.logits`` output while ``evaluate`` runs (it returns only accuracy)."""
    seen: list[torch.Tensor] = []
    original = method.logits

    def logits(images, classifier):
        out = original(images, classifier)
        seen.append(out)
        return out

    method.logits = logits
    return seen


# ------------------------------------------------------------------------------------------------ bf16 autocast
@pytest.mark.parametrize(("name", "options"), AUTOCAST_CASES, ids=[f"{m}{o or ''}" for m, o in AUTOCAST_CASES])
def test_train_step_and_evaluation_under_bf16_autocast(
    tiny_backbone: FrozenCLIP, tiny_batch, name: str, options: dict
) -> None:
    """One engine step and one engine evaluation per method inside bf16 autocast (the CUDA path, on the CPU).

    The autocast region also covers backward and the optimiser step, which the engine keeps outside it on CUDA;
    that changes nothing a dtype bug could hide behind.
    """
    images, labels, prompts = tiny_batch
    torch.manual_seed(0)
    method = build_method(name, tiny_backbone, **options)
    classes = method.class_set(prompts)
    fp32_loss = method(images, labels, classes).loss.item() if name in TRAINABLE else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if name in TRAINABLE:
            out = method(images, labels, classes)
            assert out.logits.dtype == torch.bfloat16  # autocast really ran: a float32-only path would show here
        history = train(method, _one_batch(images, labels), classes, TrainConfig(max_steps=1), progress=False)
        logits_seen = _spy_logits(method)
        for target in ("base", "novel"):
            result = evaluate(method, [(images, labels)], method.class_set(prompts), target, progress=False)
            assert result.total == 4
    assert len(logits_seen) == 2 and all(torch.isfinite(x).all() for x in logits_seen)
    if name not in TRAINABLE:
        assert history.steps == []
        return
    assert len(history.steps) == 1
    loss = history.steps[0]["loss"]
    assert math.isfinite(loss)
    assert loss == pytest.approx(fp32_loss, rel=0.05)  # bf16 rounds, it does not change the model
    for param_name, param in method.trainable_parameters():
        assert param.grad is not None, f"{name}: no gradient reached {param_name} under autocast"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient in {param_name}"
        assert param.dtype == torch.float32  # the optimiser keeps float32 master weights


# ------------------------------------------------------------------------------------------------ devices
def _tensor_attributes(module: torch.nn.Module) -> list[str]:
    """Plain tensor attributes (not parameters or buffers): ``.to(device)`` would leave them behind."""
    return [f"{prefix}.{key}" for prefix, sub in module.named_modules() for key, value in vars(sub).items()
            if isinstance(value, torch.Tensor)]


def _off_device(method: torch.nn.Module, device: torch.device) -> list[str]:
    tensors = [*method.named_parameters(), *method.named_buffers()]
    return [f"{n} on {t.device}" for n, t in tensors if t.device != device]


@pytest.fixture(scope="module")
def meta_backbone() -> FrozenCLIP:
    """tiny-clip on the ``meta`` device: a second device that a CPU-only machine has, standing in for CUDA."""
    return create_backbone("tiny-clip", None).to("meta")


@pytest.mark.parametrize("name", METHODS)
def test_method_follows_its_backbone_device(meta_backbone: FrozenCLIP, name: str) -> None:
    method = build_method(name, meta_backbone)
    assert _tensor_attributes(method) == []
    assert _off_device(method.to(meta_backbone.device), torch.device("meta")) == []


@pytest.mark.parametrize("name", METHODS)
def test_session_build_puts_the_method_on_the_backbone_device(
    tmp_path, monkeypatch, meta_backbone: FrozenCLIP, name: str
) -> None:
    """The path the chapters use: without ``.to(backbone.device)`` in ``Session.build`` this fails on a CPU."""
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path))
    session = Session(get_profile("mini"), progress=False)
    session._backbone = meta_backbone
    method = session.build(RunSpec("b2n", name, "dtd", profile="mini"))
    assert method.backbone is meta_backbone
    assert _off_device(method, torch.device("meta")) == []


class _DevicelessFactories(TorchFunctionMode):
    """Records tensor factories called without ``device=`` from files under ``root``: on CUDA they land on the CPU."""

    FACTORIES = frozenset({torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.tensor,
                           torch.as_tensor, torch.rand, torch.randn, torch.randint, torch.eye, torch.linspace})

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES and "device" not in kwargs:
            caller = traceback.extract_stack(limit=2)[0]  # factories are builtins: the frame below is the caller
            if caller.filename.startswith(self.root):
                self.found.append(f"torch.{func.__name__} at {caller.filename}:{caller.lineno}")
        return func(*args, **kwargs)


def test_deviceless_factory_detector_detects() -> None:
    with _DevicelessFactories(str(Path(__file__).parent)) as spy:
        torch.zeros(2)
        torch.arange(3, device="cpu")
    assert len(spy.found) == 1 and "torch.zeros" in spy.found[0]


@pytest.mark.parametrize("name", METHODS)
def test_no_tensor_is_created_without_a_device_at_run_time(tiny_backbone: FrozenCLIP, tiny_batch, name: str) -> None:
    images, labels, prompts = tiny_batch
    method = build_method(name, tiny_backbone)
    with _DevicelessFactories(PACKAGE_DIR) as spy:
        train(method, _one_batch(images, labels), method.class_set(prompts), TrainConfig(max_steps=1), progress=False)
        evaluate(method, [(images, labels)], method.class_set(prompts), "novel", progress=False)
    assert spy.found == []


# ------------------------------------------------------------------------------------------------ steps = 0
def test_perl_with_zero_steps_trains_nothing_and_evaluates_as_zeroshot(
    tiny_backbone: FrozenCLIP, tiny_batch, caplog
) -> None:
    """K = 0 is the zero-shot row of the K ablation: the engine skips training (with a log line) instead of crashing."""
    images, labels, prompts = tiny_batch
    perl = build_method("perl", tiny_backbone, steps=0)
    before = {k: v.clone() for k, v in perl.trainable_state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="perlkit.engine"):
        history = train(perl, _one_batch(images, labels), perl.class_set(prompts), TrainConfig(epochs=3),
                        progress=False)
    assert history.steps == [] and history.images == 0
    assert "perl's loss does not depend on any trainable parameter" in caplog.text
    assert all(torch.equal(before[k], v) for k, v in perl.trainable_state_dict().items())
    zeroshot = build_method("zeroshot", tiny_backbone)
    got, want = _spy_logits(perl), _spy_logits(zeroshot)
    a = evaluate(perl, [(images, labels)], perl.class_set(prompts), progress=False)
    b = evaluate(zeroshot, [(images, labels)], zeroshot.class_set(prompts), progress=False)
    assert a.correct == b.correct
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5)


def test_training_under_no_grad_is_refused(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    images, labels, prompts = tiny_batch
    perl = build_method("perl", tiny_backbone, steps=1)
    with torch.no_grad(), pytest.raises(RuntimeError, match="no_grad"):
        train(perl, _one_batch(images, labels), perl.class_set(prompts), TrainConfig(), progress=False)


# ------------------------------------------------------------------------------------------------ unequal depths
@pytest.fixture(scope="module")
def deep_backbone() -> FrozenCLIP:
    """tiny-clip-deep: 24 vision blocks 48 wide, 12 text blocks 32 wide, the shape of ViT-L/14 in miniature."""
    return create_backbone("tiny-clip-deep", None)


def test_depth_per_encoder(deep_backbone: FrozenCLIP, tiny_backbone: FrozenCLIP) -> None:
    assert (deep_backbone.depth("vision"), deep_backbone.depth("text")) == (24, 12)
    assert tiny_backbone.num_layers == 12
    with pytest.raises(BackboneError, match=r"24 vision vs 12 text blocks.*depth\("):
        deep_backbone.num_layers  # noqa: B018


def _count_blocks(backbone: FrozenCLIP) -> tuple[dict[str, int], list]:
    counts = {"vision": 0, "text": 0}
    handles = []
    for modality in counts:
        for block in backbone.blocks(modality):
            def hook(module, args, output, modality=modality):
                counts[modality] += 1
            handles.append(block.mlp.register_forward_hook(hook))  # plain blocks are run by their parts
    return counts, handles


@pytest.mark.parametrize("name", METHODS)
def test_methods_run_every_block_of_unequal_encoders(deep_backbone: FrozenCLIP, tiny_batch, name: str) -> None:
    """Each method trains and evaluates on 24/12 blocks, and its image path reaches the last vision block."""
    images, labels, prompts = tiny_batch
    torch.manual_seed(0)
    method = build_method(name, deep_backbone)
    history = train(method, _one_batch(images, labels), method.class_set(prompts), TrainConfig(max_steps=1),
                    progress=False)
    assert all(math.isfinite(s["loss"]) for s in history.steps)
    classifier = method.classifier(method.class_set(prompts))
    counts, handles = _count_blocks(deep_backbone)
    try:
        with torch.no_grad():
            logits = method.logits(images, classifier)
    finally:
        for handle in handles:
            handle.remove()
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    assert counts["vision"] >= 24 and counts["text"] == 0  # the image path runs the vision tower to its last block
    if name == "zeroshot":
        return
    # blocks per image pass: zero-shot's 24 plus the re-run upper blocks (PERL) or exactly 24 (in-place methods)
    expected = {"perl": 7 + 5 * (24 - 7), "mmrl": 24, "mmrlpp": 24, "mma": 24, "rmma": 24}[name]
    assert counts["vision"] == expected


def test_perl_parameter_count_does_not_depend_on_depth(deep_backbone: FrozenCLIP) -> None:
    assert build_method("perl", deep_backbone).num_trainable() == 5 * (48 + 32) + 2


def test_identity_settings_equal_zeroshot_on_unequal_depths(deep_backbone: FrozenCLIP, tiny_batch) -> None:
    """PERL K=0 and R-MMA alpha=0 are frozen CLIP: with 24/12 blocks too, so every encoder is run to its own end."""
    images, _, prompts = tiny_batch
    zeroshot = build_method("zeroshot", deep_backbone)
    want = zeroshot.logits(images, zeroshot.classifier(zeroshot.class_set(prompts)))
    for name, options in (("perl", {"steps": 0}), ("rmma", {"alpha": 0.0})):
        method = build_method(name, deep_backbone, **options)
        got = method.logits(images, method.classifier(method.class_set(prompts)))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("perl", {"split": 12}, r"split 12 is out of range for the text encoder of tiny-clip-deep \(blocks 0..11"),
        ("perl", {"split": [7, 24], "modalities": "vision"}, r"vision encoder .*blocks 0..23"),
        ("mmrl", {"start_layer": 13}, r"start_layer 13 is out of range for the text encoder .*blocks 1..12"),
        ("mmrlpp", {"start_layer": 13}, r"text encoder .*blocks 1..12"),
        ("mma", {"adapter_end": 13}, r"adapter_end 13 is out of range for the text encoder .*blocks 1..12"),
        ("rmma", {"end_layer": 13}, r"end_layer 13 is out of range for the text encoder .*blocks 1..12"),
    ],
)
def test_layer_options_out_of_range_name_the_encoder(
    deep_backbone: FrozenCLIP, name: str, options: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_method(name, deep_backbone, **options)


def test_perl_vision_only_split_may_exceed_the_text_depth(deep_backbone: FrozenCLIP, tiny_batch) -> None:
    images, labels, prompts = tiny_batch
    perl = build_method("perl", deep_backbone, split=[7, 20], modalities="vision", steps=1)
    assert math.isfinite(perl(images, labels, perl.class_set(prompts)).loss.item())


# ------------------------------------------------------------------------------------------------ architectures
def _tiny_clip(vision: dict | None = None, text: dict | None = None) -> CLIP | CustomTextCLIP:
    """A two-block open_clip CLIP with extra tower options, built in milliseconds (CoCa-style text: in ``.text``)."""
    torch.manual_seed(0)
    vision_cfg = {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8, **(vision or {})}
    text_cfg = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2, **(text or {})}
    return (CustomTextCLIP if text_cfg.get("embed_cls") else CLIP)(32, vision_cfg, text_cfg)


@pytest.mark.parametrize(
    ("vision", "text", "message"),
    [
        ({"attentional_pool": True}, None, "attentional pooling"),
        ({"final_ln_after_pool": True, "pool_type": "avg"}, None, "final_ln_after_pool"),
        ({"pool_type": "avg"}, None, "vision pool_type 'avg'"),
        (None, {"pool_type": "last"}, "text pool_type 'last'"),
        (None, {"embed_cls": True}, "embed_cls"),
        (None, {"no_causal_mask": True}, "bidirectional"),
        ({"layers": [1, 1, 1, 1], "width": 16}, None, "vision tower ModifiedResNet"),
    ],
)
def test_unsupported_parts_are_named(vision: dict | None, text: dict | None, message: str) -> None:
    with pytest.raises(BackboneError, match=message):
        FrozenCLIP(_tiny_clip(vision, text), "custom")


def test_custom_blocks_match_open_clip_and_train(tiny_batch) -> None:
    """CustomResidualAttentionBlock towers run through the generic block path, and PERL trains on them."""
    images, labels, prompts = tiny_batch
    model = _tiny_clip({"scale_attn": True, "ls_init_value": 0.1}, {"scale_fc": True, "scale_heads": True})
    backbone = FrozenCLIP(model, "custom")
    tokens = open_clip.tokenize(prompts, context_length=16)
    torch.testing.assert_close(backbone.encode("vision", images), model.encode_image(images), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(backbone.encode("text", tokens), model.encode_text(tokens), rtol=1e-5, atol=1e-5)
    perl = build_method("perl", backbone, split=1, steps=2)
    classes = perl.class_set(prompts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = perl(images, labels, classes).loss
    loss.backward()
    assert all(p.grad is not None for _, p in perl.trainable_parameters())


def test_weights_file_of_another_architecture_is_named(tmp_path, tiny_backbone: FrozenCLIP) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(tiny_backbone.model.state_dict(), path)
    with pytest.raises(BackboneError, match=rf"weights file {path} does not fit model 'tiny-clip-deep' \(.*differ"):
        create_backbone("tiny-clip-deep", str(path))


# ------------------------------------------------------------------------------------------------ real models (slow)
@pytest.mark.slow
@pytest.mark.parametrize("model", ["ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-S-16-alt", "ViT-M-16-alt"])
def test_every_method_builds_on_open_clip_vits(model: str) -> None:
    """Random weights, no download; ViT-L/14 has 24 vision and 12 text blocks, ViT-S-16-alt 12 and 10."""
    backbone = create_backbone(model, None)
    widths = backbone.width("vision") + backbone.width("text")
    for name in METHODS:
        options = {"adapter_end": 10} if name == "mma" and backbone.depth("text") < 12 else {}
        options = {"end_layer": 10} if name == "rmma" and backbone.depth("text") < 12 else options
        count = build_method(name, backbone, **options).num_trainable()
        if name == "perl":
            assert count == 5 * widths + 2  # 8,962 on ViT-L/14
    if model == "ViT-L-14":
        assert build_method("perl", backbone).num_trainable() == 8962
        image = torch.randn(1, 3, backbone.image_size, backbone.image_size)
        for name in METHODS:
            method = build_method(name, backbone)
            classes = method.class_set(["a photo of a cat.", "a photo of a dog."])
            with torch.no_grad():  # float32: CPU bf16 is emulated and slow at this size
                assert torch.isfinite(method.logits(image, method.classifier(classes))).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "message"),
    [("coca_ViT-B-32", "attentional pooling"), ("ViT-B-16-SigLIP", "vision tower TimmModel"),
     ("ViT-L-14-CLIPA", "final_ln_after_pool"), ("RN50", "vision tower ModifiedResNet")],
)
def test_unsupported_open_clip_models_say_why(model: str, message: str) -> None:
    with pytest.raises(BackboneError, match=message):
        create_backbone(model, None)


def test_cpu_runs_do_not_autocast() -> None:
    """The engine autocasts on CUDA only: CPU numbers (the shipped results, the book) stay bit-identical."""
    with autocast_context(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
