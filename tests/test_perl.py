"""PERL as specified: parameter count, frozen backbone, gradients, readout, variants, learning."""

from __future__ import annotations

import copy

import pytest
import torch

from perlkit.backbone import FrozenCLIP
from perlkit.engine import CheckpointError, load_checkpoint, save_checkpoint
from perlkit.methods import build_method
from perlkit.methods.perl import PERL_VARIANTS


def test_parameter_count_vitb16(vitb16_backbone: FrozenCLIP) -> None:
    perl = build_method("perl", vitb16_backbone)
    assert perl.num_trainable() == 6402
    per_modality = {m: sum(p.numel() for p in mods.parameters()) for m, mods in perl.projectors.items()}
    assert per_modality == {"vision": 3841, "text": 2561}
    assert build_method("zeroshot", vitb16_backbone).num_trainable() == 0
    assert build_method("perl", vitb16_backbone, modalities="vision").num_trainable() == 3841
    assert build_method("perl", vitb16_backbone, modalities="text").num_trainable() == 2561
    rank2 = sum(3 * d + 2 * d * 2 + 2 for d in (768, 512))
    assert build_method("perl", vitb16_backbone, rank=2).num_trainable() == rank2


def test_variant_parameter_counts(tiny_backbone: FrozenCLIP) -> None:
    one = build_method("perl", tiny_backbone).num_trainable()
    expected = {"early": 1, "deep": 1, "shared": 1, "step": 4, "layer": 3, "layerstep": 12}
    for variant, n in expected.items():
        assert build_method("perl", tiny_backbone, **PERL_VARIANTS[variant]).num_trainable() == n * one


def test_unknown_option_is_rejected(tiny_backbone: FrozenCLIP) -> None:
    with pytest.raises(ValueError, match="unknown option.*stepz"):
        build_method("perl", tiny_backbone, stepz=3)
    with pytest.raises(ValueError, match="unknown method"):
        build_method("perl2", tiny_backbone)


def test_k0_is_zeroshot(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    images, _, prompts = tiny_batch
    perl0, zs = build_method("perl", tiny_backbone, steps=0), build_method("zeroshot", tiny_backbone)
    c0, cz = perl0.classifier(perl0.class_set(prompts)), zs.classifier(zs.class_set(prompts))
    assert torch.allclose(perl0.logits(images, c0), zs.logits(images, cz), atol=1e-5)


def test_gradients_reach_only_projectors_and_backbone_stays_bit_identical(tiny_backbone: FrozenCLIP, tiny_batch):
    images, labels, prompts = tiny_batch
    torch.manual_seed(0)
    perl = build_method("perl", tiny_backbone)
    before = copy.deepcopy(tiny_backbone.state_dict())
    optimizer = torch.optim.AdamW([p for _, p in perl.trainable_parameters()], lr=1e-2)
    out = perl(images, labels, perl.class_set(prompts))
    out.loss.backward()
    for name, param in perl.trainable_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in tiny_backbone.parameters())
    optimizer.step()
    after = tiny_backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_loss_is_ce_plus_anchor(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    images, labels, prompts = tiny_batch
    perl = build_method("perl", tiny_backbone, anchor_weight=0.5)
    out = perl(images, labels, perl.class_set(prompts))
    assert out.loss.item() == pytest.approx(out.terms["ce"] + 0.5 * out.terms["anchor"], rel=1e-5)
    assert 0.0 <= out.terms["anchor"] <= 2.0


def test_each_step_changes_the_readout(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    images, _, prompts = tiny_batch
    perl = build_method("perl", tiny_backbone, steps=3)
    classes = perl.class_set(prompts)
    logits = perl.step_logits(images, perl.step_classifiers(classes))
    assert len(logits) == 4
    assert not torch.allclose(logits[0], logits[-1])
    zs = build_method("zeroshot", tiny_backbone)
    assert torch.allclose(logits[0], zs.logits(images, zs.classifier(zs.class_set(prompts))), atol=1e-5)


@pytest.mark.parametrize("variant", sorted(PERL_VARIANTS))
def test_variants_run_and_learn(tiny_backbone: FrozenCLIP, tiny_batch, variant: str) -> None:
    images, labels, prompts = tiny_batch
    torch.manual_seed(0)
    perl = build_method("perl", tiny_backbone, steps=2, **PERL_VARIANTS[variant])
    classes = perl.class_set(prompts)
    optimizer = torch.optim.AdamW([p for _, p in perl.trainable_parameters()], lr=5e-2)
    losses = []
    for _ in range(40):
        out = perl(images, labels, classes)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.terms["ce"])
    assert losses[-1] < 0.85 * losses[0], losses


def test_text_chunking_matches_full_refinement(tiny_backbone: FrozenCLIP, tiny_batch) -> None:
    images, labels, prompts = tiny_batch
    torch.manual_seed(0)
    full = build_method("perl", tiny_backbone)
    chunked = build_method("perl", tiny_backbone, text_chunk_size=2)
    chunked.load_state_dict(full.state_dict())
    a = full(images, labels, full.class_set(prompts))
    b = chunked(images, labels, chunked.class_set(prompts))
    assert torch.allclose(a.loss, b.loss, atol=1e-5)
    a.loss.backward()
    b.loss.backward()
    for (_, p), (_, q) in zip(full.trainable_parameters(), chunked.trainable_parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5)


def test_checkpoint_roundtrip_and_wrong_loads(tmp_path, tiny_backbone: FrozenCLIP) -> None:
    torch.manual_seed(0)
    perl = build_method("perl", tiny_backbone)
    path = tmp_path / "perl.pt"
    save_checkpoint(perl, path)
    other = build_method("perl", tiny_backbone)
    load_checkpoint(other, path)
    assert all(torch.equal(a, b) for a, b in zip(perl.state_dict().values(), other.state_dict().values(), strict=True))
    with pytest.raises(CheckpointError, match="holds a 'perl' checkpoint.*'zeroshot'"):
        load_checkpoint(build_method("zeroshot", tiny_backbone), path)
    with pytest.raises(CheckpointError, match="trained with options"):
        load_checkpoint(build_method("perl", tiny_backbone, steps=2), path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="junk.pt|pickle|invalid"):
        load_checkpoint(other, tmp_path / "junk.pt")
