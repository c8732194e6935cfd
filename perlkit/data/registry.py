"""Static facts about the 15 CoOp/Dassl benchmarks: names, folders, split files, templates and sizes.

Everything here is transcribed from CoOp's dataset classes, its ``DATASETS.md`` and CoOp's published split
sizes; nothing is computed from data on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from .core import DatasetError

DATASET_NAMES: tuple[str, ...] = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
    "imagenet_v2",
    "imagenet_sketch",
    "imagenet_a",
    "imagenet_r",
)
B2N_DATASETS: tuple[str, ...] = DATASET_NAMES[:11]
XD_TARGETS: tuple[str, ...] = DATASET_NAMES[1:11]
DG_TARGETS: tuple[str, ...] = DATASET_NAMES[11:]

DISPLAY_NAMES: dict[str, str] = {
    "imagenet": "ImageNet",
    "caltech101": "Caltech101",
    "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars",
    "oxford_flowers": "Flowers102",
    "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DTD",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
    "imagenet_v2": "ImageNet-V2",
    "imagenet_sketch": "ImageNet-Sketch",
    "imagenet_a": "ImageNet-A",
    "imagenet_r": "ImageNet-R",
}

# Dassl/CoOp class names, accepted as aliases so that CoOp configs can be used verbatim.
DASSL_NAMES: dict[str, str] = {
    "imagenet": "ImageNet",
    "caltech101": "Caltech101",
    "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars",
    "oxford_flowers": "OxfordFlowers",
    "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DescribableTextures",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
    "imagenet_v2": "ImageNetV2",
    "imagenet_sketch": "ImageNetSketch",
    "imagenet_a": "ImageNetA",
    "imagenet_r": "ImageNetR",
}

SINGLE_TEMPLATE = "a photo of a {}."

# CoOp ``CUSTOM_TEMPLATES`` (trainers/zsclip.py), keyed by perlkit name.
COOP_TEMPLATES: dict[str, str] = {
    "imagenet": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "food101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet_v2": "a photo of a {}.",
    "imagenet_sketch": "a photo of a {}.",
    "imagenet_a": "a photo of a {}.",
    "imagenet_r": "a photo of a {}.",
}

# Class-name renames CoOp applies when it builds a split from the raw folders.
CALTECH_RENAMES: dict[str, str] = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}
EUROSAT_RENAMES: dict[str, str] = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}
RENAMES: dict[str, dict[str, str]] = {"caltech101": CALTECH_RENAMES, "eurosat": EUROSAT_RENAMES}


@dataclass(frozen=True)
class Expected:
    """Expected class count and split sizes of one dataset (val 0 / train 0 = the split does not exist)."""

    num_classes: int
    train: int
    val: int
    test: int


# CoOp's published sizes (train / val / test); ImageNet's val is its test; the variants are test-only.
PUBLISHED_COUNTS: dict[str, Expected] = {
    "imagenet": Expected(1000, 1_281_167, 0, 50_000),
    "caltech101": Expected(100, 4_128, 1_649, 2_465),
    "oxford_pets": Expected(37, 2_944, 736, 3_669),
    "stanford_cars": Expected(196, 6_509, 1_635, 8_041),
    "oxford_flowers": Expected(102, 4_093, 1_633, 2_463),
    "food101": Expected(101, 50_500, 20_200, 30_300),
    "fgvc_aircraft": Expected(100, 3_334, 3_333, 3_333),
    "sun397": Expected(397, 15_880, 3_970, 19_850),
    "dtd": Expected(47, 2_820, 1_128, 1_692),
    "eurosat": Expected(10, 13_500, 5_400, 8_100),
    "ucf101": Expected(101, 7_639, 1_898, 3_783),
    "imagenet_v2": Expected(1000, 0, 0, 10_000),
    "imagenet_sketch": Expected(1000, 0, 0, 50_889),
    "imagenet_a": Expected(200, 0, 0, 7_500),
    "imagenet_r": Expected(200, 0, 0, 30_000),
}

EXPECTED_FILE = "perlkit_expected.json"

_ZHOU = (
    "{file} from the Google-Drive link in KaiyangZhou/CoOp DATASETS.md "
    "(GitHub copy: linzhiqiu/cross_modal_adaptation, folder splits/)"
)


@dataclass(frozen=True)
class Spec:
    """Where one dataset lives under the data root and how it is read.

    ``kind`` selects the reader: ``zhou`` (split_zhou JSON), ``aircraft`` (official FGVC split files),
    ``imagenet``, ``imagenet_v2``, ``imagenet_sketch`` or ``imagenet_subset`` (-A / -R).
    """

    kind: str
    folder: str
    image_dir: str
    split_file: str | None
    source: str
    paths_relative_to_dataset_dir: bool = False


SPECS: dict[str, Spec] = {
    "imagenet": Spec(
        "imagenet", "imagenet", "images", None,
        "ILSVRC-2012 train/val images (https://image-net.org) arranged as images/train/<wnid>/ and "
        "images/val/<wnid>/, plus classnames.txt from the CoOp Google-Drive link in KaiyangZhou/CoOp DATASETS.md",
    ),
    "caltech101": Spec(
        "zhou", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
        "101_ObjectCategories.tar.gz (https://data.caltech.edu/records/mzrjq-6wc02) and "
        + _ZHOU.format(file="split_zhou_Caltech101.json"),
    ),
    "oxford_pets": Spec(
        "zhou", "oxford_pets", "images", "split_zhou_OxfordPets.json",
        "images.tar.gz and annotations.tar.gz (https://www.robots.ox.ac.uk/~vgg/data/pets/) and "
        + _ZHOU.format(file="split_zhou_OxfordPets.json"),
    ),
    "stanford_cars": Spec(
        "zhou", "stanford_cars", ".", "split_zhou_StanfordCars.json",
        "cars_train/, cars_test/, devkit/ and cars_test_annos_withlabels.mat "
        "(https://ai.stanford.edu/~jkrause/cars/car_dataset.html) and "
        + _ZHOU.format(file="split_zhou_StanfordCars.json"),
        paths_relative_to_dataset_dir=True,
    ),
    "oxford_flowers": Spec(
        "zhou", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
        "102flowers.tgz and imagelabels.mat (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/), "
        "cat_to_name.json, and " + _ZHOU.format(file="split_zhou_OxfordFlowers.json"),
    ),
    "food101": Spec(
        "zhou", "food-101", "images", "split_zhou_Food101.json",
        "food-101.tar.gz (https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/) and "
        + _ZHOU.format(file="split_zhou_Food101.json"),
    ),
    "fgvc_aircraft": Spec(
        "aircraft", "fgvc_aircraft", "images", None,
        "the data/ folder of fgvc-aircraft-2013b.tar.gz (https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/), "
        "renamed to fgvc_aircraft/ (official split files, no split_zhou file)",
    ),
    "sun397": Spec(
        "zhou", "sun397", "SUN397", "split_zhou_SUN397.json",
        "SUN397.tar.gz (https://vision.princeton.edu/projects/2010/SUN/) and "
        + _ZHOU.format(file="split_zhou_SUN397.json"),
    ),
    "dtd": Spec(
        "zhou", "dtd", "images", "split_zhou_DescribableTextures.json",
        "dtd-r1.0.1.tar.gz (https://www.robots.ox.ac.uk/~vgg/data/dtd/) and "
        + _ZHOU.format(file="split_zhou_DescribableTextures.json"),
    ),
    "eurosat": Spec(
        "zhou", "eurosat", "2750", "split_zhou_EuroSAT.json",
        "EuroSAT.zip, RGB version (https://github.com/phelber/EuroSAT) extracted as 2750/, and "
        + _ZHOU.format(file="split_zhou_EuroSAT.json"),
    ),
    "ucf101": Spec(
        "zhou", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
        "UCF-101-midframes.zip (middle frames, CoOp Google-Drive link in KaiyangZhou/CoOp DATASETS.md) and "
        + _ZHOU.format(file="split_zhou_UCF101.json"),
    ),
    "imagenet_v2": Spec(
        "imagenet_v2", "imagenetv2", "imagenetv2-matched-frequency-format-val", None,
        "imagenetv2-matched-frequency.tar.gz (https://github.com/modestyachts/ImageNetV2) plus a copy of "
        "imagenet/classnames.txt",
    ),
    "imagenet_sketch": Spec(
        "imagenet_sketch", "imagenet-sketch", "images", None,
        "ImageNet-Sketch (https://github.com/HaohanWang/ImageNet-Sketch), its sketch/ folder renamed to images/, "
        "plus a copy of imagenet/classnames.txt",
    ),
    "imagenet_a": Spec(
        "imagenet_subset", "imagenet-adversarial", "imagenet-a", None,
        "imagenet-a.tar (https://github.com/hendrycks/natural-adv-examples) plus a copy of imagenet/classnames.txt",
    ),
    "imagenet_r": Spec(
        "imagenet_subset", "imagenet-rendition", "imagenet-r", None,
        "imagenet-r.tar (https://github.com/hendrycks/imagenet-r) plus a copy of imagenet/classnames.txt",
    ),
}


def canonical_name(name: str) -> str:
    """Map a registry key, display name or Dassl class name to the registry key.

    Exists so that CLI users and CoOp-style configs can name a dataset the way they are used to.
    """
    key = name.strip()
    if key in SPECS:
        return key
    folded = key.lower().replace("-", "").replace("_", "")
    for k in DATASET_NAMES:
        aliases = {k, DISPLAY_NAMES[k], DASSL_NAMES[k]}
        if folded in {a.lower().replace("-", "").replace("_", "") for a in aliases}:
            return k
    raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
