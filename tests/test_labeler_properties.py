"""Property-based tests: the labeler never raises, is deterministic, and its outputs are well-formed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from medflip.labeler import label_report, label_values, split_sentences
from medflip.observations import OBSERVATIONS

WORDS = [
    "no",
    "not",
    "without",
    "effusion",
    "pleural",
    "pneumothorax",
    "cardiomegaly",
    "heart",
    "size",
    "normal",
    "enlarged",
    "may",
    "represent",
    "cannot",
    "exclude",
    "resolved",
    "XXXX",
    "atelectasis",
    "or",
    "and",
    "but",
    ",",
    ".",
    ";",
    ":",
    "?",
    "1.",
    "opacity",
    "calcified",
    "granuloma",
    "tube",
    "lines",
    "endplate",
    "\n\n",
    "-",
]
report_like = st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join)
anything = st.one_of(
    st.none(),
    st.text(max_size=300),
    report_like,
    st.binary(max_size=200),
    st.integers(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=3),
)
VALID = {None, 0, 1, -1}


@settings(max_examples=150, deadline=None)
@given(anything)
def test_never_raises_and_is_well_formed(text: object) -> None:
    labels = label_report(text)
    assert list(labels.values) == list(OBSERVATIONS)
    assert set(labels.values.values()) <= VALID
    assert labels.vector().shape == (14,)
    for sentence in labels.sentences:
        assert sentence.text and set(sentence.values.values()) <= VALID
        for items in sentence.evidence.values():
            for ev in items:
                assert labels.text[ev.start : ev.end] == ev.phrase
    if not any(c.isalpha() for c in labels.text):
        assert all(v is None for v in labels.values.values())  # nothing found -> not mentioned


@settings(max_examples=100, deadline=None)
@given(report_like)
def test_deterministic_and_paths_agree(text: str) -> None:
    first = label_report(text)
    assert label_report(text).values == first.values
    assert list(label_values([text]))[0] == [first.values[o] for o in OBSERVATIONS]
    assert split_sentences(text) == [s.text for s in first.sentences]


@settings(max_examples=60, deadline=None)
@given(report_like)
def test_report_value_is_the_strongest_sentence_value(text: str) -> None:
    rank = {None: 0, 0: 1, -1: 2, 1: 3}
    labels = label_report(text)
    for obs in OBSERVATIONS[1:]:
        sentence_values = [s.values[obs] for s in labels.sentences]
        strongest = max(sentence_values, key=lambda v: rank[v], default=None)
        assert labels.values[obs] == strongest


def test_huge_and_odd_inputs() -> None:
    big = "No pleural effusion, no pneumothorax, mild cardiomegaly " * 20_000  # ~1 MB, one "sentence"
    labels = label_values([big, "\ud800\udfff lone surrogates", "\x00\x01\x02", "İİİ ﬁbrosis ½"])
    first = next(labels)
    assert first[OBSERVATIONS.index("Pleural Effusion")] == 0
    assert first[OBSERVATIONS.index("Cardiomegaly")] == 1
    assert len(list(labels)) == 3
