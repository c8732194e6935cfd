"""Tests of world 2, the candidate mini world (issue 13): class counts from the real one-epoch budgets, swapped name
pairs, captions, a tiny build the real readers read, and world 1 left exactly as its results were made."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from perlkit.experiments.calibration import STEPS_FACTOR_BAR, base_class_count, perl_batch_size, real_steps_one_epoch
from perlkit.mini import world2 as W2
from perlkit.mini.build import build_mini_world, default_mini_root, expected_counts, world_fingerprint
from perlkit.mini.worlds import get_world

B2N = [b.key for b in W2.BENCHMARKS[:11]]


def test_world2_renders_deterministically_at_64px() -> None:
    for bi, b in enumerate(W2.BENCHMARKS):
        split = 0 if b.per_class[0] else 2
        a = W2.render_bench_image(0, bi, split, 1, 2)
        assert a.size == (64, 64) and a.mode == "RGB", b.key
        assert np.array_equal(np.asarray(a), np.asarray(W2.render_bench_image(0, bi, split, 1, 2))), b.key
        assert not np.array_equal(np.asarray(a), np.asarray(W2.render_bench_image(1, bi, split, 1, 2))), b.key


def test_world2_one_epoch_budget_within_the_bar_of_the_real_benchmarks() -> None:
    """base classes x 16 shots / batch: within x1.5 of the real benchmark's steps (ImageNet exempt, 100 classes)."""
    batch = perl_batch_size()
    for bi, b in enumerate(W2.BENCHMARKS[:11]):
        names = [c.name for c in W2.bench_concepts_cached(bi)]
        assert len(set(names)) == len(names), b.key
        steps = math.ceil(base_class_count(len(names)) * 16 / batch)
        real = real_steps_one_epoch(b.key)
        if b.key == "imagenet":
            assert len(names) == 100
            continue
        assert real / STEPS_FACTOR_BAR <= steps <= real * STEPS_FACTOR_BAR, (b.key, steps, real)


def test_swapped_pairs_are_symmetric_neighbours_at_the_set_fraction() -> None:
    for domain, (frac, rate) in W2.SWAPS.items():
        partners = W2.swap_partners(domain)
        concepts = {c.name: c for c in W2.domain_concepts(domain)}
        base = W2.base_half(domain)
        for in_base in (True, False):
            half = [n for n in concepts if (n in base) == in_base]
            assert sum(n in partners for n in half) == 2 * round(frac * len(half) / 2), (domain, in_base)
        assert 0.5 < rate < 1
        for a, b in partners.items():
            assert partners[b] == a and a != b
            assert (a in base) == (b in base), (domain, a, b)  # a pair is only confused where both are labels
            ca, cb = concepts[a].attrs, concepts[b].attrs
            assert len(ca) == 1 or sum(ca[k] != cb[k] for k in ca) == 1, (domain, a, b)
    assert W2.swap_partners("pet") == {} and W2.swap_partners("object") == {}


def test_captions_name_a_swapped_class_by_its_partner_more_often_than_by_itself() -> None:
    rng = np.random.default_rng(0)
    partners = W2.swap_partners("satellite")
    concept = next(c for c in W2.domain_concepts("satellite") if c.name in partners)
    said = Counter()
    for _ in range(600):
        text = W2.caption(rng, "satellite", concept, "photo")
        said["own"] += concept.name in text
        said["partner"] += partners[concept.name] in text
    rate = W2.NAME_RATE["satellite"] * (1 - W2.CAPTION_NOISE)
    assert said["partner"] > said["own"] > 0
    assert abs((said["own"] + said["partner"]) / 600 - rate) < 0.06


def test_each_world_has_its_own_identity_and_2_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_world("1").module.WORLD_VERSION == "1" and get_world("2").module.WORLD_VERSION == "2"
    assert world_fingerprint() == world_fingerprint("2") != world_fingerprint("1")
    assert world_fingerprint("2").startswith("mini-world-2-")
    # world 2's pixels, as the shipped results record them: a change to its world code makes every one stale
    assert world_fingerprint("2") == "mini-world-2-849106711eaff866"
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path))
    assert default_mini_root("2") == tmp_path / "mini-2" == default_mini_root() != default_mini_root("1")
    with pytest.raises(ValueError, match="unknown mini world '5'; there are 1, 2, 3, 4"):
        get_world("5")


@pytest.mark.slow
def test_tiny_world2_build_is_read_by_the_real_readers(tmp_path: Path) -> None:
    from perlkit.data import load_dataset

    root = build_mini_world(tmp_path / "w2", seed=0, progress=False, scale=0.05, workers=1, world="2")
    exp = json.loads((root / "perlkit_expected.json").read_text())
    assert exp == expected_counts(0.05, "2") and exp["sun397"]["num_classes"] == 270
    assert json.loads((root / "BUILD_COMPLETE").read_text())["config"]["world_version"] == "2"
    for key in ("stanford_cars", "fgvc_aircraft", "dtd", "eurosat", "ucf101"):
        splits = load_dataset(key, root)
        assert len(splits.classnames) == exp[key]["num_classes"], key
        assert len(splits.test) == exp[key]["test"], key
    assert build_mini_world(root, seed=0, progress=False, scale=0.05, world="2") == root  # reused, not rebuilt
    assert B2N[0] == "imagenet"


def test_world2_ships_its_own_weights_and_commands_use_them(tmp_path: Path) -> None:
    """--ship writes each world's own shipped folder; a mini command on world 2 without --weights reads world 2's
    shipped weights, and --weights still puts a candidate in their place."""
    from perlkit.mini.cli import pretrain_out_dir, world_overrides
    from perlkit.mini.weights import mini_weights_path
    from perlkit.profiles import get_profile

    folder = mini_weights_path("2").parent
    assert pretrain_out_dir(None, ship=True, world="2") == folder != mini_weights_path("1").parent
    assert mini_weights_path("2").parent.name == "mini-2" and mini_weights_path() == mini_weights_path("2")
    shipped = get_profile("mini", **world_overrides("2", None))
    assert (shipped.world, shipped.pretrained) == ("2", str(mini_weights_path("2")))
    candidate = get_profile("mini", **world_overrides("2", str(tmp_path / "mini-clip.pt")))
    assert candidate.pretrained == str(tmp_path / "mini-clip.pt") and candidate.sha256 is None


def test_a_world2_build_made_by_other_code_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """World 2's version stays "2" while its design changes: the marker records the code, so an old build is redone
    (one was once reused and calibrated by mistake)."""
    from perlkit.mini import build

    config = build._config(0, 1.0, "2")
    assert config["code"] == world_fingerprint("2") and "code" not in build._config(0, 1.0, "1")
    root = tmp_path / "w2"
    root.mkdir()
    (root / build.MARKER).write_text(json.dumps({"config": {**config, "code": "mini-world-2-older"}}))
    assert not build.is_complete(root, 0, 1.0, "2")
    (root / build.MARKER).write_text(json.dumps({"config": config}))
    assert build.is_complete(root, 0, 1.0, "2")


#: sha256 (first 16 hex digits) of world 2's pretraining batches (images, tokens) at two steps of the last phase,
#: computed with the code of run 5 (b1f7100), the candidate's weights
RUN5_BATCHES = {1950: ("8c01b1e1268b459c", "e5dec2a62527eab0"), 2399: ("31e56882b4602a96", "1c78b6f598e6d1f0")}


def _digests(images: torch.Tensor, text: torch.Tensor) -> tuple[str, str]:
    return tuple(hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16] for t in (images, text))


def test_world2_pretrains_on_run5s_batches() -> None:
    """World 2 has no pretraining views (runs 6 and 7 tried them): its batches are those that made run 5."""
    from perlkit.mini import pretrain
    from perlkit.mini.weights import get_mini_tokenizer

    assert get_world("1").views is None and get_world("2").views is None
    tok = get_mini_tokenizer()
    for step, digests in RUN5_BATCHES.items():
        assert _digests(*pretrain.make_batch(0, step, 128, tok, world="2")) == digests


def test_pretraining_views_reframe_the_same_pairs_from_their_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    """A world with views (as runs 6 and 7 were made) keeps the pairs and the batches of the phases before
    ``views_from``, and reframes some images from that phase on."""
    from perlkit.mini import pretrain
    from perlkit.mini.weights import get_mini_tokenizer

    plain_world = get_world("2")
    views = {"crop_p": 0.5, "crop_scale": (0.15, 1.0), "flip_p": 0.5}
    viewed_world = dataclasses.replace(plain_world, views=views, views_from=2)
    first_viewed = sum(ph["steps"] for ph in plain_world.phases[:2])
    tok = get_mini_tokenizer()
    steps = (first_viewed - 1, first_viewed)
    plain = {step: pretrain.make_batch(0, step, 8, tok, world="2") for step in steps}
    monkeypatch.setattr(pretrain, "get_world", lambda version: viewed_world)
    for step in steps:
        images, text = pretrain.make_batch(0, step, 8, tok, world="2")
        assert (text == plain[step][1]).all()  # views are drawn after the pairs: same captions
        changed = [not np.allclose(a.numpy(), b.numpy()) for a, b in zip(images, plain[step][0], strict=True)]
        if step < first_viewed:
            assert not any(changed)  # the phases before views_from are those of a world without views
        else:
            assert 0 < sum(changed) < 8  # some images reframed, some left as rendered (p = 0.5 crop, 0.5 flip)


def test_pretrain_view_crops_within_scale_and_mirrors() -> None:
    from perlkit.mini.pretrain import pretrain_view

    image = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    flipped = pretrain_view(np.random.default_rng(0), image, {"crop_p": 0.0, "crop_scale": (1, 1), "flip_p": 1.0})
    assert (flipped == image[:, ::-1]).all()
    kept = pretrain_view(np.random.default_rng(0), image, {"crop_p": 0.0, "crop_scale": (1, 1), "flip_p": 0.0})
    assert (kept == image).all()
    cropped = pretrain_view(np.random.default_rng(1), image, {"crop_p": 1.0, "crop_scale": (0.25, 0.25),
                                                              "flip_p": 0.0})
    assert cropped.shape == image.shape and not (cropped == image).all()


def test_candidate_world3_is_world2_with_reframed_views_on_twice_the_schedule() -> None:
    """Candidate 3 (stop 39) changes only the pretraining: world 2's benchmarks and captions, run 6's views from
    the first step, every phase twice as long at the same learning rates and mixes."""
    from perlkit.mini.worlds import CANDIDATE_WORLDS, REFRAMING_VIEWS, WORLDS

    two, three = get_world("2"), get_world("3")
    assert "3" in CANDIDATE_WORLDS and "3" not in WORLDS  # no shipped weights to verify
    assert three.module is two.module and three.caption is two.caption
    assert three.views == REFRAMING_VIEWS == {"crop_p": 0.5, "crop_scale": (0.15, 1.0), "flip_p": 0.5}
    assert three.views_from == 0
    assert [ph["steps"] for ph in three.phases] == [2 * ph["steps"] for ph in two.phases] == [1800, 2000, 1000]
    for a, b in zip(three.phases, two.phases, strict=True):
        assert {k: v for k, v in a.items() if k != "steps"} == {k: v for k, v in b.items() if k != "steps"}


#: sha256 (first 12 hex digits) of candidate worlds' pretraining batches of 32 at seed 0: world 3's computed with the
#: code that made world3-run1 (784af03), world 4's with the code that made world4-run1
CANDIDATE_BATCHES = {"3": {0: ("287b5469191b", "5256ea4e24d6"), 4799: ("f58a84945d99", "bd0a6adca9b3")},
                     "4": {0: ("de87c893d479", "e75e4c54fff1"), 4799: ("f106ce87c770", "dd47f6dbe48a")}}


def test_candidate_worlds_pretrain_on_the_batches_of_their_runs() -> None:
    from perlkit.mini import pretrain
    from perlkit.mini.weights import get_mini_tokenizer

    tok = get_mini_tokenizer()
    for world, steps in CANDIDATE_BATCHES.items():
        for step, digests in steps.items():
            images, text = pretrain.make_batch(0, step, 32, tok, world=world)
            assert tuple(d[:12] for d in _digests(images, text)) == digests, (world, step)


def test_candidate_world4_is_world3_with_names_held_down_and_textures_uncropped() -> None:
    """Candidate 4 (stop 40): world 3's schedule and views, except that textures are only mirrored, and world 2's
    captions with objects named less often and more cars, aircraft and textures swapped; the images are world 2's."""
    from perlkit.mini import world4 as W4

    three, four = get_world("3"), get_world("4")
    assert four.module is three.module and four.phases == three.phases and four.candidate_of == "2"
    assert four.views == {**three.views, "uncropped_domains": ("texture",)}
    assert four.caption is W4.caption
    changed = {d for d in W2.NAME_RATE if W4.NAME_RATE[d] != W2.NAME_RATE[d]}
    assert changed == {"object"} and W4.NAME_RATE["object"] < W2.NAME_RATE["object"]
    swapped_more = {d for d in W4.SWAPS if W4.SWAPS[d] != W2.SWAPS.get(d)}
    assert swapped_more == {"car", "aircraft", "texture"}
    for domain in W2.SWAPS:
        partners = W4.swap_partners(domain)
        if domain in swapped_more:
            assert len(partners) > len(W2.swap_partners(domain))
        else:
            assert partners == W2.swap_partners(domain)
        for a, b in partners.items():  # world 2's rule: symmetric, one attribute apart, within a half
            assert partners[b] == a and (a in W2.base_half(domain)) == (b in W2.base_half(domain))
    # world 2's own rates and pairs are untouched, and a domain whose rates agree gets world 2's captions
    assert W2.SWAPS["car"] == (0.1, 0.6) and W2.NAME_RATE["object"] == 0.85
    pet = W2.domain_concepts("pet")[0]
    for seed in range(20):
        assert W4.caption(np.random.default_rng(seed), "pet", pet, "photo") == \
            W2.caption(np.random.default_rng(seed), "pet", pet, "photo")
    # a swapped car is named by its partner at world 4's rate as world 2's are at theirs
    partners = W4.swap_partners("car")
    car = next(c for c in W2.domain_concepts("car") if c.name in partners and c.name not in W2.swap_partners("car"))
    said = Counter(partners[car.name] in W4.caption(np.random.default_rng(i), "car", car, "photo") for i in range(400))
    assert said[True] > 0.25 * 400


def test_uncropped_domains_are_only_mirrored() -> None:
    from perlkit.mini.pretrain import pretrain_view

    image = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    views = {"crop_p": 1.0, "crop_scale": (0.25, 0.25), "flip_p": 1.0, "uncropped_domains": ("texture",)}
    assert (pretrain_view(np.random.default_rng(1), image, views, "texture") == image[:, ::-1]).all()
    assert not (pretrain_view(np.random.default_rng(1), image, views, "car") == image[:, ::-1]).all()


def test_a_candidate_world_pretrains_only_into_an_explicit_folder(tmp_path: Path) -> None:
    from perlkit.mini.cli import pretrain_out_dir

    for ship in (False, True):
        for world in ("3", 3, "4"):
            with pytest.raises(ValueError, match=f"world {world} is a candidate.*give --out DIR"):
                pretrain_out_dir(None, ship=ship, world=world)
    assert pretrain_out_dir(str(tmp_path / "run"), ship=False, world="4") == tmp_path / "run"


def test_a_candidate_world_has_no_profile_folder_or_weights_and_says_how_to_use_it(tmp_path: Path) -> None:
    """A candidate keeps world 2's benchmarks and ships nothing: a profile, a world build or its weights path is
    refused with the command that does work, before any work."""
    from perlkit.mini.build import build_mini_world, world_fingerprint
    from perlkit.mini.weights import mini_weights_path
    from perlkit.profiles import get_profile

    advice = r"candidate pretraining design.*`perlkit mini pretrain --world 3 --out DIR`.*`--world 2 --weights"
    for attempt in (lambda: get_profile("mini", world="3", pretrained=str(tmp_path / "w.pt")),
                    lambda: mini_weights_path("3"), lambda: world_fingerprint("3"),
                    lambda: build_mini_world(tmp_path / "root", world="3")):
        with pytest.raises(ValueError, match=advice):
            attempt()
    assert not (tmp_path / "root").exists()
