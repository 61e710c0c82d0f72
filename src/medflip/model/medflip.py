"""MedFLIP dual encoder: masked ViT + HF text encoder, projected into one normalised space.

    images [N, 1, H, W] --MaskedViT(mask)--> pooled [N, Dv], patches [N, L_keep, Dv] --image_proj--> [N, E]
    input_ids [M, T]    --TextEncoder-------> pooled [M, Dt], tokens  [M, T, Dt]      --text_proj---> [M, E]

Pooled features and tokens share a projection, so the SVD loss compares patches and words in the
same space as the contrastive loss. Checkpoints: safetensors weights + JSON config + tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medflip._version import __version__
from medflip.errors import UserError
from medflip.model.decoder import MAEDecoder
from medflip.model.grounding import ground
from medflip.model.preprocess import ImageLike, Preprocess, PreprocessConfig
from medflip.model.text import MLMHead, TextConfig, TextEncoder, load_tokenizer
from medflip.model.vision import MaskedViT, VisionConfig
from medflip.runtime import autocast_context

MAX_LOGIT_SCALE = math.log(100.0)
CONFIG_NAME, WEIGHTS_NAME, TEXT_DIR = "config.json", "model.safetensors", "text"


@dataclass
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = 512
    init_logit_scale: float = math.log(1 / 0.07)
    reconstruction_decoder: bool = False  # MAE decoder for the optional reconstruction term
    mlm_head: bool = False  # MLM head for the optional text-masking term

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        return cls(vision=VisionConfig(**d.pop("vision", {})), text=TextConfig(**d.pop("text", {})), **d)


@dataclass
class Prediction:
    """Zero-shot prediction: `probs` [N, C] (rows sum to 1) over `classes`, in the order given."""

    classes: list[str]
    probs: torch.Tensor  # [N, C] float32, CPU

    @property
    def labels(self) -> list[str]:
        """The most probable class of each image."""
        return [self.classes[i] for i in self.probs.argmax(1).tolist()]

    def to_records(self, names: list[str] | None = None) -> list[dict]:
        """One dict per image: {"image": name, "label": top class, "probs": {class: p}}."""
        names = names or [str(i) for i in range(len(self.probs))]
        return [
            {
                "image": n,
                "label": self.classes[int(p.argmax())],
                "probs": {c: round(float(v), 6) for c, v in zip(self.classes, p)},
            }
            for n, p in zip(names, self.probs)
        ]


@dataclass
class MedFLIPOutput:
    image_embeds: torch.Tensor  # [N, E], L2-normalised
    text_embeds: torch.Tensor  # [M, E], L2-normalised
    logit_scale: torch.Tensor  # scalar, clamped log-scale: logits = exp(logit_scale) * v . t
    image_tokens: torch.Tensor | None = None  # [N, L_keep, E] normalised projected visible patches
    text_tokens: torch.Tensor | None = None  # [M, T, E] normalised projected tokens (padding included)
    text_mask: torch.Tensor | None = None  # [M, T] 1 = real token
    ids_keep: torch.Tensor | None = None  # [N, L_keep] visible patch indices (None: no masking)
    image_hidden: torch.Tensor | None = None  # [N, L_keep, Dv] encoder patch tokens (MAE decoder input)
    text_hidden: torch.Tensor | None = None  # [M, T, Dt] encoder token states (MLM head input)


class MedFLIP(nn.Module):
    def __init__(self, cfg: ModelConfig | None = None, _text_hf_config=None, _tokenizer=None):
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        self.vision = MaskedViT(cfg.vision)
        self.text = TextEncoder(cfg.text, hf_config=_text_hf_config)
        self.tokenizer = _tokenizer if _tokenizer is not None else load_tokenizer(cfg.text.name)
        self.image_proj = nn.Linear(self.vision.width, cfg.embed_dim, bias=False)
        self.text_proj = nn.Linear(self.text.width, cfg.embed_dim, bias=False)
        nn.init.normal_(self.image_proj.weight, std=self.vision.width**-0.5)
        nn.init.normal_(self.text_proj.weight, std=self.text.width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self.decoder = (
            MAEDecoder(self.vision.width, self.vision.num_patches, cfg.vision.patch_size, cfg.vision.in_chans)
            if cfg.reconstruction_decoder
            else None
        )
        self.mlm = MLMHead(self.text.width, self.tokenizer.vocab_size) if cfg.mlm_head else None
        # How training images were prepared (cache size, resize policy, normalisation): saved in
        # config.json so inference replays it (medflip.model.preprocess). The trainer sets it from its cache.
        self.preprocess_cfg = PreprocessConfig()
        # class names -> prompt lists for `predict(classes=...)`; medflip.load wires the curated sets of
        # medflip.evaluate.prompts (the model layer does not import evaluation code).
        self.prompt_factory = None

    @property
    def preprocess(self) -> Preprocess:
        """Callable: path / PIL / numpy / DICOM -> float [1, S, S] as the training cache + evaluation read it."""
        return Preprocess(self.preprocess_cfg, self.cfg.vision.image_size)

    # ---- training forward -------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask_ratio: float = 0.0,
        return_tokens: bool = False,
        mask_noise: torch.Tensor | None = None,
    ) -> MedFLIPOutput:
        """images: [N, C, H, W] normalised; input_ids / attention_mask: [M, T]; mask_noise: [N, L] or None
        (patch-masking noise; training draws it per sample from the seed and step, see train/step.py)."""
        img_pooled, img_hidden, ids_keep = self.vision(images, mask_ratio, mask_noise)
        txt_pooled, txt_hidden = self.text(input_ids, attention_mask)
        out = MedFLIPOutput(
            image_embeds=F.normalize(self.image_proj(img_pooled), dim=-1),
            text_embeds=F.normalize(self.text_proj(txt_pooled), dim=-1),
            logit_scale=self.logit_scale.clamp(0.0, MAX_LOGIT_SCALE),
            text_mask=attention_mask,
            ids_keep=ids_keep,
            image_hidden=img_hidden,
            text_hidden=txt_hidden,
        )
        if return_tokens:
            out.image_tokens = F.normalize(self.image_proj(img_hidden), dim=-1)
            out.text_tokens = F.normalize(self.text_proj(txt_hidden), dim=-1)
        return out

    # ---- inference API ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Pad to the longest text in the batch (not a fixed length): short report sentences stay cheap."""
        enc = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.cfg.text.max_length,
            return_tensors="pt",
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def _image_batch(self, images) -> torch.Tensor:
        """A [N, C, H, W] tensor (already normalised) as is; a list of paths / PIL / arrays preprocessed."""
        if isinstance(images, torch.Tensor) and images.ndim == 4 and images.is_floating_point():
            return images
        if isinstance(images, torch.Tensor) and images.ndim == 3 and images.is_floating_point():
            return images.unsqueeze(0)
        if not isinstance(images, (list, tuple)):
            images = [images]
        return self.preprocess.batch(list(images))

    @torch.no_grad()
    def encode_image(
        self, images: torch.Tensor | list[ImageLike], batch_size: int = 64, precision: str = "fp32"
    ) -> torch.Tensor:
        """images: [N, C, H, W] normalised (`model.preprocess`), or a list of files / PIL images / arrays
        (preprocessed here) -> [N, E] unit vectors. Encoded `batch_size` at a time, so N may be large.
        precision: "fp32" or "bf16" (autocast; fast on CUDA and on CPUs with AVX512-BF16)."""
        was_training = self.training
        self.eval()
        chunks = []
        raw = not isinstance(images, torch.Tensor)
        n = len(images) if raw or images.ndim == 4 else 1
        for i in range(0, n, batch_size):
            x = self._image_batch(images[i : i + batch_size] if raw else images[i : i + batch_size])
            with autocast_context(self.device, precision):
                pooled, _, _ = self.vision(x.to(self.device))
                chunks.append(F.normalize(self.image_proj(pooled).float(), dim=-1))
        self.train(was_training)
        return torch.cat(chunks) if chunks else torch.zeros(0, self.cfg.embed_dim, device=self.device)

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """texts: M strings -> [M, E] unit vectors."""
        if isinstance(texts, str):
            texts = [texts]
        was_training = self.training
        self.eval()
        chunks = []
        for i in range(0, len(texts), batch_size):
            enc = {k: v.to(self.device) for k, v in self.tokenize(texts[i : i + batch_size]).items()}
            pooled, _ = self.text(enc["input_ids"], enc["attention_mask"])
            chunks.append(F.normalize(self.text_proj(pooled), dim=-1))
        self.train(was_training)
        return torch.cat(chunks) if chunks else torch.zeros(0, self.cfg.embed_dim, device=self.device)

    @torch.no_grad()
    def similarity(self, images, texts: list[str]) -> torch.Tensor:
        """Cosine similarity [N, M] between images (tensor or files) and texts (no temperature applied)."""
        return self.encode_image(images) @ self.encode_text(texts).t()

    def grounding(
        self, image: torch.Tensor | ImageLike, text: str, reference: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Where `text` points in `image` (normalised [C, H, W], or a file / PIL / array): patch x word cosine
        similarity of the unmasked image with the phrase's words, averaged over words, minus the same map
        averaged over `reference` phrases (default: the 14 observation names; `()`: nothing) -> [H_p, W_p]
        (model/grounding.py; `ground` also returns the per-word maps and the image-text similarity)."""
        return ground(self, image, text, reference).map

    @torch.no_grad()
    def class_embeddings(self, prompts: dict[str, list[str]]) -> torch.Tensor:
        """CLIP prompt ensembling: per class the normalised mean of its normalised prompt embeddings [C, E]."""
        return torch.stack(
            [F.normalize(self.encode_text(list(p)).float().mean(0), dim=-1) for p in prompts.values()]
        )

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor | list[ImageLike],
        classes: list[str] | None = None,
        prompts: dict[str, list[str]] | None = None,
        batch_size: int = 64,
        precision: str = "fp32",
    ) -> Prediction:
        """Zero-shot class probabilities, no labels needed.

        images: files / PIL images / arrays (preprocessed with `self.preprocess`) or a normalised tensor.
        prompts: {class: [prompt, ...]} (e.g. from medflip.evaluate.prompts.load_prompts); or classes: names
        turned into prompts by `self.prompt_factory` (the curated sets when loaded with `medflip.load`).
        Returns a `Prediction` (probs [N, C] = softmax(logit_scale * image . class embedding)).
        """
        if prompts is None:
            if not classes:
                raise UserError("predict needs classes=[...] or prompts={class: [prompts]}")
            if self.prompt_factory is not None:
                prompts = self.prompt_factory(list(classes))
            else:  # no curated prompt sets wired in: the class name itself is the prompt
                prompts = {c: [c.lower()] for c in classes}
        elif classes is not None:
            missing = [c for c in classes if c not in prompts]
            if missing:
                raise UserError(f"no prompts for class(es) {missing}; prompts cover {list(prompts)}")
            prompts = {c: prompts[c] for c in classes}
        empty = [c for c, p in prompts.items() if not p]
        if empty:
            raise UserError(f"class(es) {empty} have no prompts")
        img = self.encode_image(images, batch_size=batch_size, precision=precision).float()
        cls = self.class_embeddings(prompts).to(img.device)
        scale = self.logit_scale.detach().clamp(max=MAX_LOGIT_SCALE).exp().float()
        probs = (scale * img @ cls.t()).softmax(-1).cpu()
        return Prediction(classes=list(prompts), probs=probs)

    # ---- checkpoints -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json, model.safetensors and the text config + tokenizer (text/)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cfg = dataclasses.asdict(self.cfg)
        cfg["vision"]["checkpoint"] = ""  # the weights are in model.safetensors now
        meta = {
            "architecture": "MedFLIP",
            "medflip_version": __version__,
            "config": cfg,
            "preprocess": self.preprocess_cfg.to_dict(),
        }
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        self.text.model.config.save_pretrained(directory / TEXT_DIR)
        self.tokenizer.save_pretrained(directory / TEXT_DIR)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> MedFLIP:
        """Load a folder written by `save_pretrained`. Never unpickles: JSON + safetensors only."""
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoTokenizer

        directory = Path(directory)
        meta = read_model_config(directory)
        cfg = ModelConfig.from_dict(meta["config"])
        text_dir = directory / TEXT_DIR
        model = cls(
            cfg,
            _text_hf_config=AutoConfig.from_pretrained(text_dir),
            _tokenizer=AutoTokenizer.from_pretrained(text_dir),
        )
        state = load_file(str(directory / WEIGHTS_NAME), device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UserError(
                f"{directory}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        # models saved before the preprocessing record: the cache size is unknown, the model size is used
        model.preprocess_cfg = PreprocessConfig.from_dict(meta.get("preprocess"))
        return model.to(map_location)


def read_model_config(directory: Path) -> dict:
    """Validate that `directory` holds a medflip model and return its config.json contents."""
    if not directory.is_dir():
        raise UserError(f"model folder not found: {directory}")
    path = directory / CONFIG_NAME
    if not path.is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise UserError(f"{directory} is not a medflip model folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("architecture") != "MedFLIP" or "config" not in meta:
        raise UserError(
            f"{directory} is not a medflip model folder ({CONFIG_NAME} has no MedFLIP architecture)"
        )
    return meta
