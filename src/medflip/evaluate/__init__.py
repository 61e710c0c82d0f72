"""What a trained model is worth: zero-shot, retrieval, linear probe and fine-tuning, data / time efficiency,
metrics with bootstrap intervals, prompts and plots."""

from medflip._lazy import lazy_face

_NAMES = {
    "zero_shot": "zeroshot",
    "retrieval": "zeroshot",
    "encode_images": "zeroshot",
    "class_embeddings": "zeroshot",
    "run_supervised": "supervised",
    "fit_linear_probe": "supervised",
    "finetune": "supervised",
    "FinetuneConfig": "supervised",
    "stratified_subset": "supervised",
    "time_efficiency": "efficiency",
    "data_efficiency": "efficiency",
    "classification_metrics": "metrics",
    "precision_recall_at_k": "metrics",
    "bootstrap_ci": "metrics",
    "chexpert_prompts": "prompts",
    "binary_prompts": "prompts",
    "load_prompts": "prompts",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_face(__name__, _NAMES)
