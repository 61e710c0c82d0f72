"""Decoupled image and text streams (drawn independently, matched by their labels) and the batches the
trainer consumes.

MedCLIP's insight: images and texts need not be paired, because positives are defined by label
similarity. So a batch is N images (from an image collection, with label vectors) and N texts (from a
text corpus, with label vectors), drawn independently; paired data (an image with its own report) is
the special case `paired=True`.

Everything a batch contains is a pure function of (seed, step): image order is a seeded permutation
per epoch, text draws and augmentation use generators seeded with (seed, step). So resuming at step s
reproduces the exact batches of an uninterrupted run, and the data position in a checkpoint is the step.
Under torchrun, rank r of W takes rows [r B/W, (r+1) B/W) of that global batch (`batch(step, r, W)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medflip.data.augment import AugmentConfig, augment_batch, draw_augment_params, normalize
from medflip.errors import UserError
from medflip.labeler import label_report
from medflip.observations import COMPETITION_TASKS, OBSERVATIONS, single_class


def balanced_rows(
    labels: np.ndarray,
    ids: np.ndarray,
    per_class: int,
    rng: np.random.Generator,
    classes: tuple[str, ...] | list[str] = COMPETITION_TASKS,
    single_share: float = 0.5,
) -> np.ndarray:
    """Rows of `ids` (with repetition where a pool is small): `per_class` positive for each class, a
    `single_share` of them where it is the only positive of `classes` (so the class is seen alone, not only
    beside more common findings), then `per_class` rows at random (normal and everything else). A class with
    no positive row gets none. Returns the indices in that order."""
    task_of = single_class(labels, classes)
    out = []
    for k, name in enumerate(classes):
        pos = ids[labels[ids, OBSERVATIONS.index(name)] > 0]
        single = ids[task_of[ids] == k]
        n_single = int(round(single_share * per_class)) if len(single) else 0
        for pool, n in ((single, n_single), (pos, per_class - n_single)):
            if len(pool):
                out.append(rng.choice(pool, n, replace=len(pool) < n))
    out.append(rng.choice(ids, per_class, replace=len(ids) < per_class))
    return np.concatenate(out)


@dataclass
class TextCorpus:
    """Reports split into sentences, with labels per sentence and per report.

    sentences[r]: the sentences of report r; sentence_labels[r]: float32 [S_r, K]; report_labels: [R, K].
    """

    reports: list[str]
    sentences: list[list[str]]
    sentence_labels: list[np.ndarray]
    report_labels: np.ndarray

    def __len__(self) -> int:
        return len(self.reports)

    @classmethod
    def from_reports(
        cls, reports: list[str], uncertain: str = "positive", min_chars: int = 3, drop_unlabeled: bool = True
    ) -> TextCorpus:
        """Label `reports` with medflip's report labeler (report- and sentence-level).

        drop_unlabeled: leave out sentences that mention none of the 14 observations ("Tortuous aorta.",
        "Pulmonary XXXX normal."). Their label vector is all zero, so their soft targets are uniform:
        they carry no signal and only dilute the batch. A report left with no sentence keeps its whole text.
        Under uncertain="ignore" a sentence whose only findings are uncertain (NaN) counts as unlabeled too.
        """
        sentences, sent_labels, rep_labels = [], [], []
        for text in reports:
            result = label_report(text)
            kept = [
                s
                for s in result.sentences
                if len(s.text.strip()) >= min_chars
                and (not drop_unlabeled or np.nan_to_num(s.vector(uncertain)).any())
            ]
            if not kept:  # keep row alignment with the images: fall back to the whole report
                sentences.append([text or ""])
                sent_labels.append(result.vector(uncertain)[None])
            else:
                sentences.append([s.text for s in kept])
                sent_labels.append(np.stack([s.vector(uncertain) for s in kept]).astype(np.float32))
            rep_labels.append(result.vector(uncertain))
        return cls(list(reports), sentences, sent_labels, np.stack(rep_labels).astype(np.float32))

    def subset(self, ids: np.ndarray) -> TextCorpus:
        """The reports `ids`, in that order."""
        return TextCorpus(
            [self.reports[i] for i in ids],
            [self.sentences[i] for i in ids],
            [self.sentence_labels[i] for i in ids],
            self.report_labels[ids],
        )

    def balanced_sentences(
        self,
        per_class: int,
        rng: np.random.Generator,
        classes: tuple[str, ...] | list[str] = COMPETITION_TASKS,
        single_share: float = 0.5,
    ) -> TextCorpus:
        """A class-balanced corpus of single sentences (see `balanced_rows`), one "report" per sentence.

        Why sentences and not reports: a report positive for a rare finding holds one or two sentences
        about it, so even a report-balanced stream shows the rare finding in few texts per batch, and its
        images' soft targets then fall mostly on other findings' sentences.
        """
        flat = [(t, lab) for ss, ls in zip(self.sentences, self.sentence_labels) for t, lab in zip(ss, ls)]
        labels = np.stack([lab for _, lab in flat])
        pick = balanced_rows(labels, np.arange(len(flat)), per_class, rng, classes, single_share)
        texts = [flat[i][0] for i in pick]
        return TextCorpus(texts, [[t] for t in texts], [labels[i : i + 1] for i in pick], labels[pick])

    def draw(
        self, report_ids: np.ndarray, rng: np.random.Generator, mode: str
    ) -> tuple[list[str], np.ndarray]:
        """mode "sentence": one random sentence of each report (sentence labels); "report": the whole report."""
        if mode == "report":
            return [self.reports[r] for r in report_ids], self.report_labels[report_ids]
        if mode != "sentence":
            raise ValueError(f"text mode must be 'sentence' or 'report', got {mode!r}")
        texts, labels = [], []
        for r in report_ids:
            k = rng.integers(len(self.sentences[r]))
            texts.append(self.sentences[r][k])
            labels.append(self.sentence_labels[r][k])
        return texts, np.stack(labels)


@dataclass
class Batch:
    """One process's share of the global batch (the whole batch in a single process).

    The share is rows [row_start, row_start + N) of a global batch of `global_size` rows; `all_texts` holds the
    global batch's texts so every process tokenizes (and pads) exactly as a single process would.
    """

    images: torch.Tensor  # [N, 1, S, S] float, normalised (augmented when training)
    image_labels: torch.Tensor  # [N, K]
    texts: list[str]  # N strings
    text_labels: torch.Tensor  # [N, K]
    image_index: np.ndarray | None  # [N] rows of the image collection
    all_texts: list[str] | None = None  # [B] texts of the global batch (None: `texts` is the whole batch)
    row_start: int = 0  # global row of this share's first sample
    global_size: int | None = None  # B (None: len(texts))

    @property
    def rows(self) -> slice:
        """This share's rows in the global batch."""
        return slice(self.row_start, self.row_start + len(self.texts))

    @property
    def global_texts(self) -> list[str]:
        return self.all_texts if self.all_texts is not None else self.texts

    @property
    def global_batch_size(self) -> int:
        return self.global_size if self.global_size is not None else len(self.texts)


def shard_rows(batch_size: int, rank: int, world: int) -> slice:
    """Rows [r B/W, (r+1) B/W) of the global batch that rank r of W trains on."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world size {world}")
    if batch_size % world:
        raise UserError(
            f"data.batch_size {batch_size} (the global batch) is not divisible by the {world} processes; "
            f"use a multiple of {world}"
        )
    n = batch_size // world
    return slice(rank * n, (rank + 1) * n)


class DecoupledBatches:
    """Seeded, resumable batches: the global batch `batch(step)` is a pure function of (seed, step).

    `batch(step, rank, world)` is rank's share of that same global batch: image indices, text draws and
    augmentation parameters are drawn for the whole global batch and sliced, and only the share's images are
    read, so W processes x B/W train on exactly the data of 1 process x B, and a run can resume on another
    number of processes.
    """

    def __init__(
        self,
        images: np.ndarray,
        image_labels: np.ndarray,
        corpus: TextCorpus,
        batch_size: int,
        image_size: int,
        seed: int = 0,
        paired: bool = False,
        text_mode: str = "sentence",
        augment: AugmentConfig | None = None,
        device: torch.device | str = "cpu",
    ):
        if len(images) != len(image_labels):
            raise ValueError(f"{len(images)} images but {len(image_labels)} label rows")
        if paired and len(corpus) != len(images):
            raise ValueError(
                f"paired mode needs one report per image: {len(images)} images, {len(corpus)} reports"
            )
        if min(len(images), len(corpus)) < batch_size:
            raise ValueError(
                f"batch_size {batch_size} is larger than the data: {len(images)} images, {len(corpus)} reports"
            )
        self.images, self.image_labels, self.corpus = images, image_labels.astype(np.float32), corpus
        self.batch_size, self.image_size, self.seed = batch_size, image_size, seed
        self.paired, self.text_mode, self.augment = paired, text_mode, augment
        self.device = torch.device(device)
        self.batches_per_epoch = len(images) // batch_size  # drop the ragged last batch

    def epoch_of(self, step: int) -> int:
        return step // self.batches_per_epoch

    def _indices(self, step: int, n: int, stream: int) -> np.ndarray:
        per_epoch = n // self.batch_size
        epoch, k = divmod(step, per_epoch)
        order = np.random.default_rng([self.seed, stream, epoch]).permutation(n)
        return order[k * self.batch_size : (k + 1) * self.batch_size]

    def batch(self, step: int, rank: int = 0, world: int = 1) -> Batch:
        rows = shard_rows(self.batch_size, rank, world)
        idx = self._indices(step, len(self.images), stream=0)
        # Sorted reads are friendlier to a memory-mapped cache; order inside a batch does not matter.
        idx = np.sort(idx)
        rng = np.random.default_rng([self.seed, 2, step])
        report_ids = idx if self.paired else self._indices(step, len(self.corpus), stream=1)
        texts, text_labels = self.corpus.draw(report_ids, rng, self.text_mode)  # the whole global batch
        local = idx[rows]
        u8 = torch.from_numpy(np.ascontiguousarray(self.images[local])).unsqueeze(1).to(self.device)
        if self.augment is not None:
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            params = tuple(p[rows] for p in draw_augment_params(len(idx), gen, self.augment))
            x = augment_batch(u8, self.image_size, None, self.augment, params=params)
        else:
            x = normalize(u8, self.image_size)
        return Batch(
            images=x,
            image_labels=torch.from_numpy(self.image_labels[local]),
            texts=texts[rows],
            text_labels=torch.from_numpy(np.asarray(text_labels, dtype=np.float32)[rows]),
            image_index=local,
            all_texts=texts,
            row_start=rows.start,
            global_size=len(idx),
        )
