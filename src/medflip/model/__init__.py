"""The dual encoder: a masked ViT and a Hugging Face text encoder in one normalised space (medflip.model.medflip),
its optional MAE decoder and MLM head, inference preprocessing and grounding maps."""

from medflip._lazy import lazy_face

_NAMES = {
    "MedFLIP": "medflip",
    "ModelConfig": "medflip",
    "MedFLIPOutput": "medflip",
    "Prediction": "medflip",
    "MaskedViT": "vision",
    "VisionConfig": "vision",
    "random_masking": "vision",
    "load_vision_checkpoint": "vision",
    "TextEncoder": "text",
    "TextConfig": "text",
    "MLMHead": "text",
    "MAEDecoder": "decoder",
    "Preprocess": "preprocess",
    "PreprocessConfig": "preprocess",
    "Grounding": "grounding",
    "ground": "grounding",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_face(__name__, _NAMES)
