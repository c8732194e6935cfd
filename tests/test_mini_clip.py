"""Tests of the mini CLIP config and the weights checksum guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from perlkit.mini import weights as Wt
from perlkit.mini.worlds import WORLDS


def test_config_builds_with_12_layers_per_encoder() -> None:
    model = Wt.create_mini_model()
    assert len(model.visual.transformer.resblocks) == 12
    assert len(model.transformer.resblocks) == 12
    assert model.visual.pool_type == "tok" and model.text_pool_type == "argmax"
    tok = Wt.get_mini_tokenizer()
    t = tok(["a photo of a horned orb."])
    assert t.shape == (1, 32)
    with torch.no_grad():
        fi = model.encode_image(torch.zeros(2, 3, 64, 64))
        ft = model.encode_text(t)
    assert fi.shape == (2, 128) and ft.shape == (1, 128)


def test_truncated_text_encoder_matches_open_clip() -> None:
    from perlkit.mini.pretrain import encode_text_trunc
    torch.manual_seed(0)
    model = Wt.create_mini_model().eval()
    t = Wt.get_mini_tokenizer()(["a red horned orb.", "zigzagged texture."])
    with torch.no_grad():
        assert torch.allclose(encode_text_trunc(model, t), model.encode_text(t, normalize=True), atol=1e-5)


@pytest.mark.parametrize("world", WORLDS)
def test_shipped_weights_verify_and_load(world: str) -> None:
    assert Wt.verify_mini_weights(world=world) == Wt.mini_weights_path(world)
    assert Wt.mini_weights_path(world).stat().st_size < 50 * 2**20
    model = Wt.load_mini_model(world=world)
    assert next(model.parameters()).dtype == torch.float32


def test_each_world_checks_its_own_weights_and_says_how_to_restore_them() -> None:
    with pytest.raises(ValueError, match="fail the checksum"):
        Wt.verify_mini_weights(Wt.mini_weights_path("1"), world="2")
    advice = Wt.restore_advice(world="2")  # the default world's retrain needs no --world
    assert "perlkit/assets/mini-2/mini-clip.pt" in advice and "--ship`" in advice and "88 minutes" in advice
    advice = Wt.restore_advice(world="1")
    assert "perlkit/assets/mini/mini-clip.pt" in advice and "--ship --world 1" in advice and "43 minutes" in advice


def test_tampered_weights_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = Wt.mini_weights_path()
    if src.is_file():
        bad = tmp_path / "mini-clip.pt"
        shutil.copy(src, bad)
    else:  # no shipped weights yet: fake a file and a recorded digest
        bad = tmp_path / "mini-clip.pt"
        bad.write_bytes(b"\0" * 1000)
        digest = Wt.sha256_file(bad)
        monkeypatch.setattr(Wt, "expected_sha256", lambda world="1": digest)
    assert Wt.verify_mini_weights(bad) == bad
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        Wt.verify_mini_weights(bad)
    msg = str(err.value)
    assert str(bad) in msg and Wt.expected_sha256() in msg and Wt.sha256_file(bad) in msg
    assert "perlkit mini pretrain" in msg


@pytest.mark.slow
def test_pretraining_deterministic_and_resume_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perlkit.mini import pretrain as P
    ph = dict(P.PHASES[0])
    monkeypatch.setattr(P, "PHASES", [dict(ph, steps=2), dict(ph, steps=2, lr=5e-4)])
    monkeypatch.setattr(P, "DEFAULT_STEPS", 4)
    kw = {"batch_size": 4, "progress": False, "final_eval": False, "world": "1"}  # world 1's schedule, patched above
    straight = P.pretrain_mini_clip(tmp_path / "a", steps=4, **kw)
    assert P.pretrain_mini_clip(tmp_path / "b", steps=4, **kw)["weights_sha256"] == straight["weights_sha256"]
    P.pretrain_mini_clip(tmp_path / "c", steps=2, **kw)  # stops at the phase boundary, then resumes from it
    resumed = P.pretrain_mini_clip(tmp_path / "c", steps=4, **kw)
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert resumed["loss_curve"] == straight["loss_curve"]
