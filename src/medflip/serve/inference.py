"""What the web page shows, computed from one uploaded image: zero-shot bars, similar sentences, grounding.

Everything runs under one lock (a model is not re-entrant: the locked text tower's memo, train/eval
switches), in the server's thread pool, so concurrent requests queue instead of colliding.

Zero-shot probabilities:
- CheXpert-5: softmax over the 5 competition classes' prompt-ensemble embeddings, scaled by the model's
  temperature (exactly what `medflip eval zeroshot` and the demo score).
- 14 observations: for each finding, a two-way softmax "finding prompts" vs "normal prompts"; for No Finding,
  "normal prompts" vs the most similar finding. These are independent yes/no calls (they need not sum to 1).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from medflip.data.images import ImageReadError, open_grayscale
from medflip.evaluate.explain import model_input, overlay_png
from medflip.evaluate.prompts import CHEXPERT_PROMPT_PARTS, NORMAL_PROMPTS, chexpert_prompts
from medflip.evaluate.zeroshot import class_embeddings
from medflip.labeler import split_sentences
from medflip.labeler.iu_reports import load_iu_reports
from medflip.model.grounding import ground
from medflip.model.medflip import WEIGHTS_NAME, MedFLIP
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS

# Prompts for the observations the CheXpert prompt generator does not cover.
EXTRA_PROMPTS = {
    "Enlarged Cardiomediastinum": [
        "enlarged cardiomediastinum",
        "widened mediastinum",
        "the mediastinum is widened",
    ],
    "Lung Opacity": ["lung opacity", "airspace opacity", "patchy opacity in the lung", "hazy opacity"],
    "Pleural Other": ["pleural thickening", "pleural abnormality", "pleural plaque"],
    "Fracture": ["rib fracture", "fracture", "displaced rib fracture"],
    "Support Devices": ["support devices", "endotracheal tube", "central venous catheter", "pacemaker"],
}


class BadUpload(ValueError):
    """The upload is not a readable radiograph; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def observation_prompts() -> dict[str, list[str]]:
    out = {}
    for name in OBSERVATIONS:
        if name == "No Finding":
            out[name] = list(NORMAL_PROMPTS)
        elif name in CHEXPERT_PROMPT_PARTS:
            out[name] = chexpert_prompts([name], n_per_class=10)[name]
        else:
            out[name] = EXTRA_PROMPTS[name]
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decode_upload(data: bytes, name: str = "upload"):
    """Bytes of a PNG / JPEG / DICOM -> PIL "L" image, through the cache's reader (same rules, same errors)."""
    if not data:
        raise BadUpload("empty upload: choose a PNG, JPEG or DICOM chest X-ray", 400)
    fd, tmp = tempfile.mkstemp(prefix="medflip-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return open_grayscale(tmp)
    except ImageReadError as e:
        reason = e.reason.replace(tmp, name).replace(repr(tmp), repr(name))
        raise BadUpload(f"{name} is not a readable PNG / JPEG / DICOM image: {reason}") from None
    finally:
        os.unlink(tmp)


@dataclass
class SentenceIndex:
    sentences: list[str]
    embeds: torch.Tensor  # [S, E] unit vectors


class Analyzer:
    """Holds the model, the prompt embeddings and the corpus index; every public method takes the lock."""

    def __init__(
        self,
        model_dir: str | Path,
        corpus: list[str] | None = None,
        cache_dir: str | Path | None = None,
        device: str = "cpu",
        progress: bool = True,
    ):
        self.model_dir = Path(model_dir)
        self.model = MedFLIP.from_pretrained(self.model_dir, map_location=device).eval()
        self.model_hash = file_sha256(self.model_dir / WEIGHTS_NAME)
        self.lock = threading.Lock()
        self.scale = float(self.model.logit_scale.detach().clamp(max=np.log(100)).exp())
        obs = observation_prompts()
        with torch.inference_mode():
            self.obs_emb = class_embeddings(self.model, obs)  # [14, E]
            self.cx5_emb = class_embeddings(
                self.model, chexpert_prompts(list(COMPETITION_TASKS), 10)
            )  # [5, E]
        self.index = self._sentence_index(corpus, cache_dir, progress)

    # ---- corpus ---------------------------------------------------------------------------------
    def _sentence_index(self, corpus: list[str] | None, cache_dir, progress: bool) -> SentenceIndex:
        """Unique sentences of the corpus (default: the bundled IU reports), embedded once and cached on disk
        under the model's and the corpus's hashes (a new model or corpus never reuses stale vectors)."""
        if corpus is None:
            corpus = [r.text for r in load_iu_reports() if r.text]
        seen: dict[str, None] = {}
        for report in corpus:
            for s in split_sentences(report):
                if len(s) >= 3:
                    seen.setdefault(s, None)
        sentences = list(seen)
        key = hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:16]
        cache_dir = Path(cache_dir or Path.home() / ".cache" / "medflip" / "serve")
        path = cache_dir / f"{self.model_hash[:16]}-{key}.npy"
        if path.is_file():
            emb = np.load(path, allow_pickle=False)
            if emb.shape[0] == len(sentences):
                return SentenceIndex(sentences, torch.from_numpy(emb))

        if progress:
            print(f"embedding {len(sentences)} corpus sentences once (cached in {path})")
        chunks = []
        with torch.inference_mode():
            for i in tqdm(range(0, len(sentences), 256), disable=not progress, desc="corpus", unit="batch"):
                chunks.append(self.model.encode_text(sentences[i : i + 256]).float().cpu())
        emb = torch.cat(chunks) if chunks else torch.zeros(0, self.model.cfg.embed_dim)
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(path, emb.numpy(), allow_pickle=False)
        return SentenceIndex(sentences, emb)

    # ---- requests -------------------------------------------------------------------------------
    def analyze(self, data: bytes, name: str = "upload", phrase: str | None = None, top_k: int = 5) -> dict:
        im = decode_upload(data, name)
        with self.lock, torch.inference_mode():
            x, shown = model_input(im, self.model)
            img = self.model.encode_image(x).float().cpu()[0]  # [E]
            s_obs = self.obs_emb @ img  # [14]
            s_cx5 = self.cx5_emb @ img  # [5]
            k = OBSERVATIONS.index("No Finding")
            normal = s_obs[k]
            findings = torch.cat([s_obs[:k], s_obs[k + 1 :]])
            probs = {}
            for i, obs in enumerate(OBSERVATIONS):
                other = findings.max() if i == k else normal
                probs[obs] = float(torch.softmax(self.scale * torch.stack([s_obs[i], other]), 0)[0])
            cx5 = torch.softmax(self.scale * s_cx5, 0).tolist()
            top = COMPETITION_TASKS[int(np.argmax(cx5))]
            sims = self.index.embeds @ img
            best = torch.topk(sims, min(top_k, len(sims))) if len(sims) else None
            sentences = (
                [
                    {"text": self.index.sentences[int(i)], "similarity": round(float(v), 4)}
                    for v, i in zip(*best)
                ]
                if best is not None
                else []
            )
            grounding = self._ground(x, shown, phrase or top.lower())
        return {
            "image": {"name": name, "png": _png_b64(shown)},
            "observations": [{"name": o, "probability": round(p, 4)} for o, p in probs.items()],
            "chexpert5": [{"name": c, "probability": round(p, 4)} for c, p in zip(COMPETITION_TASKS, cx5)],
            "top_finding": top,
            "sentences": sentences,
            "grounding": grounding,
            "model": {"path": str(self.model_dir), "sha256": self.model_hash[:16]},
        }

    def ground(self, data: bytes, phrase: str, name: str = "upload") -> dict:
        im = decode_upload(data, name)
        with self.lock, torch.inference_mode():
            x, shown = model_input(im, self.model)
            return self._ground(x, shown, phrase)

    def _ground(self, x: torch.Tensor, shown: np.ndarray, phrase: str) -> dict:
        phrase = phrase.strip()
        if not phrase:
            raise BadUpload("type a phrase to ground (e.g. 'pleural effusion')", 400)
        try:
            g = ground(self.model, x, phrase)
        except ValueError as e:
            raise BadUpload(str(e), 400) from None
        lo, hi = float(g.map.min()), float(g.map.max())
        return {
            "phrase": phrase,
            "words": g.words,
            "similarity": round(g.similarity, 4),
            "range": [round(lo, 4), round(hi, 4)],
            "grid": [[round(float(v), 4) for v in row] for row in g.map],
            "heatmap_png": _b64(overlay_png(shown, g.map, lo, hi)),
        }


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _png_b64(gray: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="PNG")
    return _b64(buf.getvalue())
