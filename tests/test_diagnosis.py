"""PERL diagnosis (issue 13 point 3) on a tiny random CLIP: it watches a run without changing any of its numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_data_world import make_world

from perlkit.experiments import ResultStore, RunSpec, Session
from perlkit.experiments.diagnosis import PerlDiagnosis, diagnose_perl
from perlkit.profiles import Profile


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("diag")
    make_world(root / "data", ["eurosat"])
    profile = Profile("mini", "tiny-clip", None, None, str(root / "data"), "cpu", 64, 0, "test profile")
    return Session(profile, progress=False, store=ResultStore("mini", root / "results"))


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path))
    return tmp_path


SPEC = RunSpec("b2n", "perl", "eurosat")


def test_diagnosis_changes_no_number_of_the_run(session: Session, cache: Path) -> None:
    diagnosis = diagnose_perl(session, SPEC, every=1)
    plain = session.base_to_novel(SPEC, recompute=True)
    steps = plain["train"]["steps"]
    assert len(steps) == 12  # 3 base classes x 16 shots / batch 4
    assert diagnosis.curve["loss"].tolist() == [s["loss"] for s in steps]  # bit for bit
    assert diagnosis.curve["ce"].tolist() == [s["ce"] for s in steps]
    assert diagnosis.checkpoints["step"].tolist() == list(range(13))  # before every step, and after the last
    assert diagnosis.checkpoints["test_accuracy"].iloc[-1] == pytest.approx(plain["metrics"]["base"])
    assert diagnosis.curve["batch_accuracy"].between(0, 100).all() and len(diagnosis.curve) == 12
    # before training, the evaluation of the checkpoint loop and of the embedding shift agree
    init = diagnosis.shift.set_index("phase").loc["init"]
    assert diagnosis.checkpoints["test_accuracy"].iloc[0] == pytest.approx(init["accuracy_stepK"])


def test_default_initialisation_moves_embeddings_before_training(session: Session, cache: Path) -> None:
    default = diagnose_perl(session, SPEC)
    zeroed = diagnose_perl(session, SPEC, last_layer_scale=0.0)
    assert default.variant.startswith("paper default") and zeroed.variant.startswith("variant")
    d, z = default.shift.set_index("phase").loc["init"], zeroed.shift.set_index("phase").loc["init"]
    assert d["cos_image"] < 0.999 and d["cos_text"] < 0.999  # random W2, b2: the K-step embedding is not zero-shot
    # a zero thought token still moves the embeddings: it takes a share of every softmax in the upper blocks
    assert (zeroed.norms[zeroed.norms.phase == "init"].token_norm == 0).all()
    assert z["cos_image"] < 1 - 1e-4 and z["cos_text"] < 1 - 1e-4
    assert d["accuracy_step0"] == z["accuracy_step0"]  # step 0 is zero-shot CLIP in both
    norms = default.norms[default.norms.phase == "init"]
    assert len(norms) == 2 * 4 and set(norms.modality) == {"vision", "text"}  # K = 4 tokens per encoder
    assert (norms.token_to_stream > 0).all()
    assert (default.parameters.change_norm > 0).all()  # every projector tensor moved in training
    summary = default.summary()
    assert summary["steps"] == 12 and summary["init_cos_image"] == pytest.approx(d["cos_image"])
    assert 0 < summary["relative_change"] < 0.1  # 12 AdamW steps at lr 1e-4 barely move the default init


def test_diagnosis_is_cached(session: Session, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = diagnose_perl(session, SPEC, every=4)
    monkeypatch.setattr(session, "fit", lambda *a, **k: pytest.fail("trained again instead of reading the cache"))
    again = diagnose_perl(session, SPEC, every=4)
    assert isinstance(again, PerlDiagnosis)
    assert again.curve["loss"].tolist() == first.curve["loss"].tolist()
    assert again.summary() == pytest.approx(first.summary())
    assert list((cache / "diagnosis").rglob("*.json"))


def test_diagnosis_needs_a_perl_b2n_spec(session: Session) -> None:
    with pytest.raises(ValueError, match="PERL"):
        diagnose_perl(session, RunSpec("b2n", "zeroshot", "eurosat"))


def test_recipe_overrides_are_a_labelled_variant(session: Session, cache: Path) -> None:
    short = diagnose_perl(session, RunSpec("b2n", "perl", "eurosat", train_overrides={"max_steps": 3}))
    assert short.variant == "variant: max_steps=3" and len(short.curve) == 3
    assert short.checkpoints["step"].iloc[-1] == 3
