"""Readers, counts, few-shot sampling, base/novel split and prompts of ``perlkit.data``."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image
from test_data_world import (
    AIRCRAFT_VARIANTS,
    IMNET_NAMES,
    N_CLASSES,
    SUBSET_WNIDS,
    WNIDS,
    ZHOU,
    make_world,
    n_train,
)

from perlkit.data import (
    B2N_DATASETS,
    DATASET_NAMES,
    DG_TARGETS,
    DISPLAY_NAMES,
    PUBLISHED_COUNTS,
    XD_TARGETS,
    DatasetError,
    DatasetSplits,
    Datum,
    clean_classname,
    format_prompts,
    get_template,
    load_dataset,
    resolve_data_root,
    sample_fewshot,
    subsample_classes,
)
from perlkit.data.fewshot import fewshot_cache_path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """All 15 fabricated layouts in one data root (read-only for the tests that use it)."""
    root = tmp_path_factory.mktemp("world")
    return root, make_world(root, DATASET_NAMES)


def fresh(tmp_path: Path, *keys: str) -> Path:
    """A private data root holding only ``keys``, for tests that damage it."""
    make_world(tmp_path, list(keys))
    return tmp_path


# ------------------------------------------------------------------------------------------- registry


def test_registry_names_and_groups() -> None:
    assert len(DATASET_NAMES) == 15 and len(set(DATASET_NAMES)) == 15
    assert DATASET_NAMES[0] == "imagenet" and DATASET_NAMES[-1] == "imagenet_r"
    assert B2N_DATASETS == DATASET_NAMES[:11]
    assert XD_TARGETS == tuple(n for n in B2N_DATASETS if n != "imagenet")
    assert DG_TARGETS == ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
    assert set(DISPLAY_NAMES) == set(DATASET_NAMES)
    assert DISPLAY_NAMES["oxford_pets"] == "OxfordPets" and DISPLAY_NAMES["oxford_flowers"] == "Flowers102"
    assert PUBLISHED_COUNTS["caltech101"].test == 2465 and PUBLISHED_COUNTS["imagenet_a"].num_classes == 200


def test_aliases_are_accepted(world: tuple[Path, dict]) -> None:
    root, _ = world
    assert load_dataset("OxfordPets", root).name == "oxford_pets"
    assert load_dataset("DescribableTextures", root).name == "dtd"
    with pytest.raises(DatasetError, match="unknown dataset 'cifar10'"):
        load_dataset("cifar10", root)


# -------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("key", DATASET_NAMES)
def test_reads_every_layout(world: tuple[Path, dict], key: str) -> None:
    root, table = world
    ds = load_dataset(key, root)
    want = table[key]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (want["train"], want["val"], want["test"])
    assert len(ds.classnames) == want["num_classes"]
    assert ds.template == get_template(key)
    assert Path(ds.root).is_dir() and Path(ds.root).parent == root
    for d in (*ds.train, *ds.val, *ds.test):
        assert os.path.isabs(d.impath) and os.path.isfile(d.impath), d.impath
        assert 0 <= d.label < len(ds.classnames)
        assert d.classname == ds.classnames[d.label]
        assert "_" not in d.classname


def test_zhou_classnames_are_cleaned_and_labels_kept(world: tuple[Path, dict]) -> None:
    root, _ = world
    ucf = load_dataset("ucf101", root)
    assert ucf.classnames == ["Apply Eye Makeup", "Apply Lipstick", "Archery", "Lunges", "Yo Yo"]
    pets = load_dataset("oxford_pets", root)
    # the train list starts with class 0's 2nd image block (interleaved), labels still follow the JSON
    assert pets.classnames[1] == "american bulldog"
    assert all("american_bulldog" in d.impath for d in pets.test if d.label == 1)


def test_stanford_cars_paths_relative_to_dataset_dir(world: tuple[Path, dict]) -> None:
    root, _ = world
    cars = load_dataset("stanford_cars", root)
    assert all(Path(d.impath).parent.name == "cars_test" for d in cars.test)
    assert all(Path(d.impath).parent.parent == root / "stanford_cars" for d in cars.train)


def test_aircraft_official_split_any_extension(world: tuple[Path, dict]) -> None:
    root, _ = world
    air = load_dataset("fgvc_aircraft", root)
    assert air.classnames == AIRCRAFT_VARIANTS  # spaces kept, order of variants.txt
    assert all(d.impath.endswith(".png") for d in air.train)
    assert [sum(d.label == c for d in air.train) for c in range(N_CLASSES)] == [n_train(c) for c in range(N_CLASSES)]


def test_imagenet_layout(world: tuple[Path, dict]) -> None:
    root, _ = world
    ds = load_dataset("imagenet", root)
    assert ds.classnames == IMNET_NAMES[:N_CLASSES]
    assert ds.val == []
    assert all("/images/val/" in d.impath.replace(os.sep, "/") for d in ds.test)
    for d in ds.train + ds.test:
        assert Path(d.impath).parent.name == WNIDS[d.label]


def test_imagenet_labels_follow_classnames_txt(tmp_path: Path) -> None:
    root = fresh(tmp_path, "imagenet")
    lines = (root / "imagenet" / "classnames.txt").read_text().splitlines()
    (root / "imagenet" / "classnames.txt").write_text("\n".join(lines[::-1]) + "\n")
    ds = load_dataset("imagenet", root)
    assert ds.classnames == IMNET_NAMES[:N_CLASSES][::-1]
    for d in ds.test:
        assert Path(d.impath).parent.name == WNIDS[N_CLASSES - 1 - d.label]


def test_imagenet_v2_labels_are_folder_numbers(world: tuple[Path, dict]) -> None:
    root, _ = world
    ds = load_dataset("imagenet_v2", root)
    assert ds.train == [] and ds.val == []
    assert all(Path(d.impath).parent.name == str(d.label) for d in ds.test)
    assert ds.classnames == IMNET_NAMES[:N_CLASSES]


@pytest.mark.parametrize("key", ["imagenet_a", "imagenet_r"])
def test_imagenet_a_r_use_present_subset(world: tuple[Path, dict], key: str) -> None:
    root, _ = world
    ds = load_dataset(key, root)
    assert ds.classnames == [IMNET_NAMES[WNIDS.index(w)] for w in SUBSET_WNIDS]
    for d in ds.test:
        assert Path(d.impath).parent.name == SUBSET_WNIDS[d.label]


def test_sketch_labels_by_imagenet_classnames(world: tuple[Path, dict]) -> None:
    root, _ = world
    ds = load_dataset("imagenet_sketch", root)
    assert {Path(d.impath).parent.name: d.label for d in ds.test} == {w: i for i, w in enumerate(WNIDS[:N_CLASSES])}


# ----------------------------------------------------------------------------------------- data root


def test_resolve_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERLKIT_DATA", raising=False)
    with pytest.raises(DatasetError, match="--data-root DIR or set PERLKIT_DATA"):
        resolve_data_root(None)
    assert resolve_data_root(str(tmp_path)) == tmp_path.resolve()
    monkeypatch.setenv("PERLKIT_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path.resolve()
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_root(other) == other.resolve()  # the argument wins over the variable
    with pytest.raises(DatasetError, match=str(tmp_path / "nope")):
        resolve_data_root(tmp_path / "nope")


# ------------------------------------------------------------------------------------------- bad input


def test_missing_dataset_folder_names_path_and_source(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as exc:
        load_dataset("oxford_pets", tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "oxford_pets") in msg and "robots.ox.ac.uk" in msg


@pytest.mark.parametrize(
    "key, rel, kind",
    [
        ("caltech101", "caltech-101/split_zhou_Caltech101.json", "file"),
        ("caltech101", "caltech-101/101_ObjectCategories", "dir"),
        ("fgvc_aircraft", "fgvc_aircraft/images_variant_val.txt", "file"),
        ("fgvc_aircraft", "fgvc_aircraft/variants.txt", "file"),
        ("imagenet", "imagenet/classnames.txt", "file"),
        ("imagenet", "imagenet/images/val", "dir"),
        ("imagenet_v2", "imagenetv2/imagenetv2-matched-frequency-format-val", "dir"),
        ("imagenet_a", "imagenet-adversarial/classnames.txt", "file"),
    ],
)
def test_missing_split_file_or_folder_is_named(tmp_path: Path, key: str, rel: str, kind: str) -> None:
    root = fresh(tmp_path, key)
    target = root / rel
    shutil.rmtree(target) if kind == "dir" else target.unlink()
    with pytest.raises(DatasetError) as exc:
        load_dataset(key, root)
    assert str(target) in str(exc.value)
    assert "comes from" in str(exc.value)


def _rewrite_split(root: Path, key: str, edit) -> Path:
    folder, _, split_file, _ = ZHOU[key]
    path = root / folder / split_file
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def test_broken_split_json(tmp_path: Path) -> None:
    root = fresh(tmp_path, "dtd")
    path = root / "dtd" / "split_zhou_DescribableTextures.json"
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset("dtd", root)
    path.write_text(json.dumps({"train": [], "val": []}))
    with pytest.raises(DatasetError, match="'test'"):
        load_dataset("dtd", root)


def test_split_json_inconsistent_labels(tmp_path: Path) -> None:
    root = fresh(tmp_path, "dtd")

    def rename(data: dict) -> None:
        data["test"][0][2] = "something else"

    _rewrite_split(root, "dtd", rename)
    with pytest.raises(DatasetError, match="named both"):
        load_dataset("dtd", root)

    root2 = fresh(tmp_path / "b", "dtd")

    def drop_label(data: dict) -> None:
        for s in data:
            data[s] = [e for e in data[s] if e[1] != 2]

    _rewrite_split(root2, "dtd", drop_label)
    with pytest.raises(DatasetError, match="without gaps"):
        load_dataset("dtd", root2)


def test_aircraft_unknown_variant(tmp_path: Path) -> None:
    root = fresh(tmp_path, "fgvc_aircraft")
    path = root / "fgvc_aircraft" / "images_variant_test.txt"
    path.write_text(path.read_text() + "9999999 Boeing 999\n")
    with pytest.raises(DatasetError, match="'Boeing 999' is not listed"):
        load_dataset("fgvc_aircraft", root)


def test_unknown_class_folder(tmp_path: Path) -> None:
    root = fresh(tmp_path, "imagenet_sketch")
    (root / "imagenet-sketch" / "images" / "n09999999").mkdir()
    with pytest.raises(DatasetError, match="n09999999"):
        load_dataset("imagenet_sketch", root)


def test_count_mismatch_is_never_silent(tmp_path: Path) -> None:
    root = fresh(tmp_path, "eurosat")
    table = json.loads((root / "perlkit_expected.json").read_text())
    table["eurosat"]["test"] += 1
    table["eurosat"]["num_classes"] = 6
    (root / "perlkit_expected.json").write_text(json.dumps(table))
    with pytest.raises(DatasetError) as exc:
        load_dataset("eurosat", root)
    assert "test: 10 images, expected 11" in str(exc.value) and "5 class names, expected 6" in str(exc.value)
    with pytest.warns(UserWarning, match="expected 11"):
        ds = load_dataset("eurosat", root, strict=False)
    assert len(ds.test) == 10


def test_published_counts_apply_without_expected_file(tmp_path: Path) -> None:
    root = fresh(tmp_path, "oxford_pets")
    (root / "perlkit_expected.json").unlink()
    with pytest.raises(DatasetError, match="expected 2944"):
        load_dataset("oxford_pets", root)


def test_malformed_expected_file(tmp_path: Path) -> None:
    root = fresh(tmp_path, "oxford_pets")
    (root / "perlkit_expected.json").write_text(json.dumps({"oxford_pets": {"train": "many"}}))
    with pytest.raises(DatasetError, match="perlkit_expected.json"):
        load_dataset("oxford_pets", root)


# -------------------------------------------------------------------------------------------- few-shot


def dassl_reference(items: list[Datum], k: int) -> list[Datum]:
    """Dassl's generate_fewshot_dataset(repeat=True), written against the global ``random`` as Dassl does."""
    tracker: dict[int, list[Datum]] = defaultdict(list)
    for item in items:
        tracker[item.label].append(item)
    out: list[Datum] = []
    for group in tracker.values():
        out.extend(random.sample(group, k) if len(group) >= k else random.choices(group, k=k))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shots", [1, 4, 16])
def test_fewshot_matches_dassl(world: tuple[Path, dict], seed: int, shots: int) -> None:
    root, _ = world
    ds = load_dataset("oxford_pets", root)
    few = sample_fewshot(ds, shots=shots, seed=seed, cache=False)
    state = random.getstate()
    try:
        random.seed(seed)  # Dassl's set_random_seed, then train, then val from the same stream
        ref_train = dassl_reference(ds.train, shots)
        ref_val = dassl_reference(ds.val, min(shots, 4))
    finally:
        random.setstate(state)
    assert few.train == ref_train and few.val == ref_val
    assert len(few.train) == shots * N_CLASSES and len(few.val) == min(shots, 4) * N_CLASSES
    assert few.test == ds.test and (few.shots, few.seed) == (shots, seed)
    # labels visited in order of first appearance in the (interleaved) train list
    first = list(dict.fromkeys(d.label for d in ds.train))
    assert list(dict.fromkeys(d.label for d in few.train)) == first != sorted(first)


def test_fewshot_repeats_when_class_is_small(world: tuple[Path, dict]) -> None:
    root, _ = world
    few = sample_fewshot(load_dataset("dtd", root), shots=4, seed=1, cache=False)
    class0 = [d.impath for d in few.train if d.label == 0]  # class 0 has only 2 training images
    assert len(class0) == 4 and len(set(class0)) <= 2
    class4 = [d.impath for d in few.train if d.label == 4]  # 6 images: sampled without replacement
    assert len(set(class4)) == 4


def test_fewshot_deterministic_and_seed_dependent(world: tuple[Path, dict]) -> None:
    root, _ = world
    ds = load_dataset("food101", root)
    runs = {s: [sample_fewshot(ds, 3, s, cache=False).train for _ in range(2)] for s in (1, 2, 3)}
    assert all(a == b for a, b in runs.values())
    assert runs[1][0] != runs[2][0] != runs[3][0]


def test_fewshot_imagenet_has_no_val(world: tuple[Path, dict]) -> None:
    root, _ = world
    few = sample_fewshot(load_dataset("imagenet", root), shots=2, seed=1, cache=False)
    assert few.val == [] and len(few.train) == 2 * N_CLASSES


def test_fewshot_cache_is_json_and_reused(tmp_path: Path) -> None:
    root = fresh(tmp_path, "eurosat")
    ds = load_dataset("eurosat", root)
    few = sample_fewshot(ds, shots=2, seed=2)
    path = root / "eurosat" / "split_fewshot" / "shot_2-seed_2.json"
    assert fewshot_cache_path(ds, 2, 2) == path and path.is_file()
    payload = json.loads(path.read_text())
    assert payload["shots"] == 2 and payload["seed"] == 2 and len(payload["train"]) == 2 * N_CLASSES
    assert not any(p.suffix == ".pkl" or p.suffix == ".tmp" for p in path.parent.iterdir())
    # a second call reads the cache (prove it by editing the cache to a different, valid sample)
    payload["train"] = payload["train"][::-1]
    path.write_text(json.dumps(payload))
    again = sample_fewshot(load_dataset("eurosat", root), shots=2, seed=2)
    assert again.train == few.train[::-1] and again.val == few.val


def test_fewshot_cache_stale_or_broken(tmp_path: Path) -> None:
    root = fresh(tmp_path, "eurosat")
    ds = load_dataset("eurosat", root)
    sample_fewshot(ds, shots=2, seed=1)
    path = fewshot_cache_path(ds, 2, 1)
    smaller = DatasetSplits(**{**ds.__dict__, "train": ds.train[1:]})
    with pytest.warns(UserWarning, match="different eurosat split"):
        resampled = sample_fewshot(smaller, shots=2, seed=1)
    assert resampled == sample_fewshot(smaller, shots=2, seed=1, cache=False)
    path.write_text("{broken")
    with pytest.raises(DatasetError, match=str(path)):
        sample_fewshot(ds, shots=2, seed=1)


def test_fewshot_zero_shots_is_identity(world: tuple[Path, dict]) -> None:
    root, _ = world
    ds = load_dataset("dtd", root)
    assert sample_fewshot(ds, shots=0, cache=False) is ds


# ------------------------------------------------------------------------------------------- base/novel


def test_base_novel_boundary(world: tuple[Path, dict]) -> None:
    root, _ = world
    ds = sample_fewshot(load_dataset("oxford_pets", root), shots=2, seed=1, cache=False)
    base, novel = subsample_classes(ds, "base"), subsample_classes(ds, "novel")
    assert base.classnames == ds.classnames[:3] and novel.classnames == ds.classnames[3:]
    assert novel.classnames[0] == "leonberger"  # CoOp's Pets boundary, reproduced by the fabricated names
    for part, offset in ((base, 0), (novel, 3)):
        for split in ("train", "val", "test"):
            items = getattr(part, split)
            assert {d.label for d in items} == set(range(len(part.classnames)))
            assert all(d.classname == part.classnames[d.label] == ds.classnames[d.label + offset] for d in items)
    assert len(base.test) + len(novel.test) == len(ds.test)
    assert subsample_classes(ds, "new") == novel
    assert subsample_classes(ds, "all") is ds


def test_base_novel_even_count_and_order_rules(world: tuple[Path, dict]) -> None:
    root, _ = world
    ds = load_dataset("imagenet_a", root)  # 3 classes, test only
    assert subsample_classes(ds, "base").classnames == ds.classnames[:2]
    with pytest.raises(DatasetError, match="unknown class subset"):
        subsample_classes(ds, "half")
    pets = load_dataset("oxford_pets", root)
    with pytest.raises(DatasetError, match="before subsample_classes"):
        sample_fewshot(subsample_classes(pets, "base"), shots=2, cache=False)


# ------------------------------------------------------------------------------------------- prompts


def test_templates_and_formatting() -> None:
    assert get_template("oxford_pets") == "a photo of a {}, a type of pet."
    assert get_template("dtd") == "{} texture."
    assert get_template("eurosat") == "a centered satellite photo of {}."
    assert get_template("ucf101") == "a photo of a person doing {}."
    assert get_template("food101") == "a photo of {}, a type of food."
    assert {get_template(n, "single") for n in DATASET_NAMES} == {"a photo of a {}."}
    assert all(get_template(n).count("{}") == 1 for n in DATASET_NAMES)
    assert format_prompts(["Apply_Eye_Makeup", "Archery"], get_template("ucf101")) == [
        "a photo of a person doing Apply Eye Makeup.",
        "a photo of a person doing Archery.",
    ]
    with pytest.raises(DatasetError, match="template kind"):
        get_template("dtd", "ensemble")
    with pytest.raises(DatasetError, match="placeholder"):
        format_prompts(["a"], "no placeholder")


def test_classname_cleanup_like_coop() -> None:
    assert clean_classname("airplanes", "caltech101") == "airplane"
    assert clean_classname("Faces", "caltech101") == "face"
    assert clean_classname("Leopards", "caltech101") == "leopard"
    assert clean_classname("Motorbikes", "caltech101") == "motorbike"
    assert clean_classname("SeaLake", "eurosat") == "Sea or Lake"
    assert clean_classname("AnnualCrop", "eurosat") == "Annual Crop Land"
    assert clean_classname("Annual Crop Land", "eurosat") == "Annual Crop Land"
    assert clean_classname("Faces", "dtd") == "Faces"  # renames are per dataset
    assert clean_classname("great_white_shark") == "great white shark"


def test_listing_any_image_extension_ignores_other_files(tmp_path: Path) -> None:
    root = fresh(tmp_path, "imagenet_sketch")
    cls = root / "imagenet-sketch" / "images" / WNIDS[0]
    Image.new("RGB", (8, 8)).save(cls / "extra.JPEG", format="JPEG")
    (cls / ".DS_Store").write_bytes(b"\0")
    (cls / "notes.txt").write_text("not an image")
    table = json.loads((root / "perlkit_expected.json").read_text())
    table["imagenet_sketch"]["test"] += 1
    (root / "perlkit_expected.json").write_text(json.dumps(table))
    ds = load_dataset("imagenet_sketch", root)
    names = sorted(Path(d.impath).name for d in ds.test if d.label == 0)
    assert names == ["extra.JPEG", "sketch_0.png", "sketch_1.png"]


def test_cache_write_failure_only_warns(tmp_path: Path) -> None:
    root = fresh(tmp_path, "dtd")
    ds = load_dataset("dtd", root)
    (root / "dtd" / "split_fewshot").write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write few-shot cache"):
        few = sample_fewshot(ds, shots=1, seed=1)
    assert few == sample_fewshot(ds, shots=1, seed=1, cache=False)
