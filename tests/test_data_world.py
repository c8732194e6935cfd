"""Fabricated CoOp/Dassl dataset trees (tiny PNGs) used by the ``perlkit.data`` tests.

Importable helpers plus a couple of tests of the builder itself. Every layout mirrors the real one; only the
sizes (5 classes, a few images per class) and the image extension (.png instead of .jpg) differ.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

N_CLASSES = 5
N_VAL = 2
N_TEST = 2


def n_train(label: int) -> int:
    """Training images of class ``label``: 2..6, so that 4 shots need replacement for classes 0 and 1."""
    return 2 + label


_PNG: list[bytes] = []


def png_bytes(i: int) -> bytes:
    """A valid 8x8 PNG (a few distinct colours, generated once)."""
    if not _PNG:
        for c in range(4):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (60 * c, 255 - 60 * c, 30 * c)).save(buf, format="PNG")
            _PNG.append(buf.getvalue())
    return _PNG[i % len(_PNG)]


def _img(path: Path, i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(i))


ZHOU = {
    # key: (folder, image dir, split file, raw class names)
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                   ["accordion", "airplane", "face", "leopard", "motorbike"]),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json",
                    ["abyssinian", "american_bulldog", "basset_hound", "leonberger", "yorkshire_terrier"]),
    "stanford_cars": ("stanford_cars", ".", "split_zhou_StanfordCars.json",
                      ["2000 AM General Hummer SUV 2000", "2012 Acura RL Sedan 2012", "2012 Audi R8 Coupe 2012",
                       "2012 FIAT 500 Abarth 2012", "2012 Tesla Model S Sedan 2012"]),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                       ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "wild pansy", "sweet pea"]),
    "food101": ("food-101", "images", "split_zhou_Food101.json",
                ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "waffles"]),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json",
               ["abbey", "airplane_cabin", "airport_terminal", "alley", "amphitheater"]),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json",
            ["banded", "blotchy", "braided", "matted", "zigzagged"]),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json",
                ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Pasture Land", "Sea or Lake"]),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
               ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Lunges", "Yo_Yo"]),
}
AIRCRAFT_VARIANTS = ["707-320", "727-200", "A300B4", "Cessna 172", "DHC-8-100"]
# ImageNet-like: wnids deliberately listed in sorted order, as in CoOp's classnames.txt.
WNIDS = [f"n0{1000000 + i * 11}" for i in range(N_CLASSES + 1)]
IMNET_NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark", "electric ray"]
SUBSET_WNIDS = [WNIDS[1], WNIDS[3], WNIDS[4]]  # -A / -R hold only some classes


def _classnames_txt(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{w} {c}\n" for w, c in zip(WNIDS[:n], IMNET_NAMES[:n], strict=True)))


def make_dataset(root: Path, key: str) -> dict[str, int]:
    """Write one fabricated dataset under ``root``; return its expected counts (perlkit_expected.json entry)."""
    if key in ZHOU:
        folder, image_dir, split_file, names = ZHOU[key]
        base = root / folder
        split: dict[str, list] = {"train": [], "val": [], "test": []}
        for label, cname in enumerate(names):
            cdir = cname.replace(" ", "_")
            for s, n in (("train", n_train(label)), ("val", N_VAL), ("test", N_TEST)):
                for i in range(n):
                    if key == "stanford_cars":
                        rel = f"{'cars_test' if s == 'test' else 'cars_train'}/{label:02d}{s}{i:03d}.png"
                    else:
                        rel = f"{cdir}/{cdir}_{s}_{i:04d}.png"
                    _img(base / image_dir / rel, i + label)
                    split[s].append([rel, label, cname])
        # interleave the train list so "order of first appearance" differs from label order
        split["train"] = split["train"][N_CLASSES:] + split["train"][:N_CLASSES]
        (base / split_file).write_text(json.dumps(split))
        return {"num_classes": N_CLASSES, **{s: len(v) for s, v in split.items()}}
    if key == "fgvc_aircraft":
        base = root / "fgvc_aircraft"
        (base / "images").mkdir(parents=True)
        (base / "variants.txt").write_text("".join(v + "\n" for v in AIRCRAFT_VARIANTS))
        counts = {}
        k = 1000000
        for s in ("train", "val", "test"):
            lines = []
            for label, v in enumerate(AIRCRAFT_VARIANTS):
                for _ in range(n_train(label) if s == "train" else N_VAL):
                    _img(base / "images" / f"{k:07d}.png", k)
                    lines.append(f"{k:07d} {v}\n")
                    k += 1
            (base / f"images_variant_{s}.txt").write_text("".join(lines))
            counts[s] = len(lines)
        return {"num_classes": N_CLASSES, **counts}
    if key == "imagenet":
        base = root / "imagenet"
        _classnames_txt(base / "classnames.txt", N_CLASSES)
        for label, w in enumerate(WNIDS[:N_CLASSES]):
            for i in range(n_train(label)):
                _img(base / "images" / "train" / w / f"{w}_{i}.png", i)
            for i in range(N_TEST):
                _img(base / "images" / "val" / w / f"ILSVRC2012_val_{label}{i}.png", i)
        ntr = sum(n_train(c) for c in range(N_CLASSES))
        return {"num_classes": N_CLASSES, "train": ntr, "val": 0, "test": N_CLASSES * N_TEST}
    if key == "imagenet_v2":
        base = root / "imagenetv2"
        _classnames_txt(base / "classnames.txt", N_CLASSES)
        for label in range(N_CLASSES):
            for i in range(N_TEST):
                _img(base / "imagenetv2-matched-frequency-format-val" / str(label) / f"{i:032x}.png", i)
        return {"num_classes": N_CLASSES, "train": 0, "val": 0, "test": N_CLASSES * N_TEST}
    if key == "imagenet_sketch":
        base = root / "imagenet-sketch"
        _classnames_txt(base / "classnames.txt", N_CLASSES)
        for w in WNIDS[:N_CLASSES]:
            for i in range(N_TEST):
                _img(base / "images" / w / f"sketch_{i}.png", i)
        return {"num_classes": N_CLASSES, "train": 0, "val": 0, "test": N_CLASSES * N_TEST}
    if key in ("imagenet_a", "imagenet_r"):
        base = root / ("imagenet-adversarial" if key == "imagenet_a" else "imagenet-rendition")
        sub = base / ("imagenet-a" if key == "imagenet_a" else "imagenet-r")
        _classnames_txt(base / "classnames.txt", len(WNIDS))
        for w in SUBSET_WNIDS:
            for i in range(N_TEST):
                _img(sub / w / f"{i}.png", i)
        (sub / "README.txt").write_text("not a class folder\n")
        return {"num_classes": len(SUBSET_WNIDS), "train": 0, "val": 0, "test": len(SUBSET_WNIDS) * N_TEST}
    raise KeyError(key)


def make_world(root: Path, keys: tuple[str, ...] | list[str]) -> dict[str, dict[str, int]]:
    """Write the given datasets and a matching ``perlkit_expected.json``; return the expected table."""
    root.mkdir(parents=True, exist_ok=True)
    table = {k: make_dataset(root, k) for k in keys}
    (root / "perlkit_expected.json").write_text(json.dumps(table))
    return table


def test_world_builder_writes_valid_pngs(tmp_path: Path) -> None:
    table = make_world(tmp_path, ["oxford_pets"])
    pngs = list((tmp_path / "oxford_pets" / "images").rglob("*.png"))
    assert len(pngs) == sum(table["oxford_pets"][s] for s in ("train", "val", "test"))
    with Image.open(pngs[0]) as im:
        assert im.size == (8, 8)
