"""From files on disk to batches: manifests, dataset adapters, image reading, the uint8 cache and its views,
splits, augmentation, text corpora and the seeded, sharded batch streams."""

from medflip._lazy import lazy_face

_NAMES = {
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "validate_manifest": "manifest",
    "build_cache": "cache",
    "open_cache": "cache",
    "ImageCache": "cache",
    "patient_split": "splits",
    "load_grayscale": "images",
    "load_square": "images",
    "ImageReadError": "images",
    "AugmentConfig": "augment",
    "augment_batch": "augment",
    "normalize": "augment",
    "TextCorpus": "streams",
    "DecoupledBatches": "streams",
    "Batch": "streams",
    "build_batches": "sources",
    "load_text_reports": "texts",
    "subset_cache": "views",
    "IndexedImages": "views",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_face(__name__, _NAMES)
