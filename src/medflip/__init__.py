"""medflip: fast medical vision-language pre-training (MedFLIP)."""

from medflip._version import __version__
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS

__all__ = ["OBSERVATIONS", "COMPETITION_TASKS", "MedFLIP", "load", "__version__"]


def __getattr__(name: str):
    # Lazy: `import medflip` must not pay for torch + transformers (the CLI's --help stays fast).
    if name == "MedFLIP":
        from medflip.model.medflip import MedFLIP

        return MedFLIP
    if name == "load":  # model, preprocess = medflip.load("runs/x/model")
        from medflip.inference import load

        return load
    raise AttributeError(name)
