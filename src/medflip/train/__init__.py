"""Pre-training: the run config, the training step and loop (`pretrain`), a run from its config
(`train_from_config`: batches, model, seed, `pretrain`, model card), checkpoints and torchrun / DDP."""

from medflip._lazy import lazy_face

_NAMES = {
    "pretrain": "loop",
    "train_from_config": "run",
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
