"""The package faces: every public name each package advertises resolves, and a face stays lazy."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

FACES = [
    "medflip",
    "medflip.model",
    "medflip.losses",
    "medflip.data",
    "medflip.train",
    "medflip.evaluate",
    "medflip.labeler",
]


@pytest.mark.parametrize("package", FACES)
def test_every_advertised_name_resolves(package):
    mod = importlib.import_module(package)
    missing = [n for n in mod.__all__ if getattr(mod, n, None) is None]
    assert not missing, f"{package} advertises names it cannot give: {missing}"


def test_faces_do_not_import_torch_until_asked():
    """`import medflip.data.manifest` (the labeler and data CLIs) must not import torch through the face."""
    code = (
        "import sys, medflip, medflip.data.manifest, medflip.model, medflip.train, medflip.evaluate; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_name_is_an_attribute_error():
    import medflip.data

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        medflip.data.nope  # noqa: B018
