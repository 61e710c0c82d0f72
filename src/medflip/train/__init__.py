"""Pre-training: the run config, the training step and loop (`pretrain`), checkpoints and torchrun / DDP."""

from medflip._lazy import lazy_face

_NAMES = {
    "pretrain": "loop",
    "build_optimizer": "loop",
    "TrainingDiverged": "loop",
    "PretrainConfig": "config",
    "DataConfig": "config",
    "OptimConfig": "config",
    "TrainConfig": "config",
    "save_checkpoint": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "list_checkpoints": "checkpoint",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_face(__name__, _NAMES)
