"""The split path with no thought tokens must be open_clip itself; the text mask must let EOS see the tokens."""

from __future__ import annotations

import pytest
import torch

from perlkit.backbone import BackboneError, FrozenCLIP, create_backbone


@pytest.mark.parametrize("fixture", ["tiny_backbone", "vitb16_backbone"])
def test_k0_equals_open_clip(fixture: str, request: pytest.FixtureRequest) -> None:
    backbone: FrozenCLIP = request.getfixturevalue(fixture)
    size = backbone.image_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    ids = backbone.tokenize(["a photo of a cat.", "a photo of a very small dog on the grass."])
    with torch.no_grad():
        assert torch.allclose(backbone.encode("vision", images), backbone.model.encode_image(images), atol=1e-5)
        assert torch.allclose(backbone.encode("text", ids), backbone.model.encode_text(ids), atol=1e-5)
        for split in (0, 7, backbone.num_layers):
            state = backbone.base("vision", images, split)
            emb = backbone.project("vision", backbone.refine("vision", state, split))
            assert torch.allclose(emb, backbone.model.encode_image(images), atol=1e-5)


def test_all_weights_frozen(tiny_backbone: FrozenCLIP) -> None:
    assert not any(p.requires_grad for p in tiny_backbone.parameters())
    tiny_backbone.train(True)
    assert not tiny_backbone.model.training


def test_text_eos_attends_to_prepended_tokens(tiny_backbone: FrozenCLIP) -> None:
    ids = tiny_backbone.tokenize(["a photo of a cat."])
    state = tiny_backbone.base("text", ids, 7)
    token = torch.randn(1, 1, tiny_backbone.width("text"), generator=torch.Generator().manual_seed(3))
    first = tiny_backbone.refine("text", state, 7, token)
    second = tiny_backbone.refine("text", state, 7, token * 2.0)
    none = tiny_backbone.refine("text", state, 7)
    assert not torch.allclose(first, second)  # EOS sees the token, so changing it changes the embedding
    assert not torch.allclose(first, none)


def test_causal_mask_rebuilt_for_longer_sequence(tiny_backbone: FrozenCLIP) -> None:
    mask = tiny_backbone.causal_mask(5, torch.device("cpu"), torch.float32)
    assert mask.shape == (5, 5)
    assert torch.isinf(mask[0, 1]) and mask[4, 0] == 0 and mask[4, 4] == 0


def test_text_readout_shifted_by_prepended_tokens(tiny_backbone: FrozenCLIP) -> None:
    ids = tiny_backbone.tokenize(["a b c", "a b c d e f"])
    state = tiny_backbone.embed("text", ids)
    assert state.readout.tolist() == ids.argmax(-1).tolist()
    hidden = torch.arange(2 * 10 * 1, dtype=torch.float32).reshape(2, 10, 1)
    picked = FrozenCLIP.readout(hidden, torch.tensor([1, 3]), shift=2)
    assert picked.flatten().tolist() == [3.0, 15.0]


def test_unknown_model_and_missing_checkpoint_are_clear(tmp_path) -> None:
    with pytest.raises(BackboneError, match="unknown model 'ViT-Nope'"):
        create_backbone("ViT-Nope")
    with pytest.raises(BackboneError, match="checkpoint file not found"):
        create_backbone("tiny-clip", str(tmp_path / "missing.pt"))


def test_checksum_mismatch_is_refused(tmp_path, tiny_backbone: FrozenCLIP) -> None:
    path = tmp_path / "weights.pt"
    torch.save(tiny_backbone.model.state_dict(), path)
    with pytest.raises(BackboneError, match="checksum mismatch"):
        create_backbone("tiny-clip", str(path), sha256="0" * 64)
