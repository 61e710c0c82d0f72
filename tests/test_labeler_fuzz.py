"""Hostile input for the labeler (issue 13): seeded fuzzing and the worst case of every rule pattern.

- 10,000 hypothesis inputs (derandomized, so every CI run sees the same ones): arbitrary Unicode including
  control characters and lone surrogates, rule-phrase soup with pathological punctuation, bytes, numbers, None.
  The labeler never raises, its outputs are well formed, and the fast path (label_values) agrees with the
  detailed one (label_report).
- Big inputs: a 1 MB report, 10,000 repeated negation words, punctuation-only reports.
- Time: no report of <= 100 kB takes more than 50 ms of CPU (best of 5, so a loaded machine's waits do not
  count). The texts are the worst case found for each kind of rule-file pattern by `medflip label-bench
  --worst-case`, which times every phrase of the rule files repeated to 100 kB (docs/labeler.md).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medflip.labeler import label_report, label_values
from medflip.labeler import rules as R
from medflip.observations import OBSERVATIONS

VALID = {None, 0, 1, -1}


def fuzz(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


_rules = R.default_rules()
PHRASES = sorted(p.replace("*", "") for p in _rules.exact) + [
    w.pattern.replace("[a-z0-9]*", "xx") for w, _ in _rules.wildcard
]
PUNCT = [
    ".",
    ",",
    ";",
    ":",
    "!",
    "?",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    "...",
    "?!",
    " . ",
    "-",
    "/",
    "(",
    ")",
    "1.",
    "2)",
]
ODD = [
    "\x00",
    "\x0b",
    "\x0c",
    "\x1b",
    "\u200b",
    "\u202e",
    "\ufeff",
    "\ud800",
    "İ",
    "ß",
    "ﬁ",
    "½",
    "é",
    "😷",
    "XXXX",
]

unicode_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=400)
soup = st.lists(
    st.one_of(st.sampled_from(PHRASES), st.sampled_from(PUNCT), st.sampled_from(ODD)), max_size=60
).map(lambda parts: " ".join(parts))
mixed_case_soup = st.tuples(soup, st.booleans()).map(lambda t: t[0].upper() if t[1] else t[0].title())
not_text = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=3),
)


def check(text: object) -> None:
    labels = label_report(text)
    assert list(labels.values) == list(OBSERVATIONS)
    assert set(labels.values.values()) <= VALID
    for sentence in labels.sentences:
        assert labels.text[sentence.start : sentence.end] == sentence.text
        assert set(sentence.values.values()) <= VALID
        for items in sentence.evidence.values():
            for ev in items:
                assert labels.text[ev.start : ev.end] == ev.phrase
    fast = next(label_values([text]))
    assert fast == [labels.values[o] for o in OBSERVATIONS]


@fuzz(3_000)
@given(unicode_text)
def test_fuzz_arbitrary_unicode(text: str) -> None:
    check(text)


@fuzz(4_000)
@given(soup)
def test_fuzz_rule_phrase_soup(text: str) -> None:
    check(text)


@fuzz(2_000)
@given(mixed_case_soup)
def test_fuzz_mixed_case_soup(text: str) -> None:
    check(text)


@fuzz(1_000)
@given(not_text)
def test_fuzz_not_text(value: object) -> None:
    check(value)


def test_big_inputs_never_raise() -> None:
    megabyte = ("Small left pleural effusion, no pneumothorax; heart size normal. " * 16_000)[:1_000_000]
    negations = "no " * 10_000 + "pneumothorax"
    for text in (
        megabyte,
        negations,
        "not " * 10_000,
        "no evidence of " * 10_000 + "effusion",
        "." * 1_000_000,
        "!?" * 100_000,
        "\n" * 200_000,
        "(" * 100_000,
        ", ;" * 100_000,
        "1. " * 100_000,
    ):
        check(text)
    assert label_report(negations).values["Pneumothorax"] == 0


N = 100_000
# The worst case of each kind of rule pattern (from `medflip label-bench --worst-case`), at 100 kB.
WORST = {
    "negation trigger repeated": "no ",
    "negation + mention": "no effusion ",
    "negated list items": "no effusion, ",
    "negation + comma": "no, ",
    "mention repeated": "effusion ",
    "subject + normal qualifier": "heart normal ",
    "subject + qualifier across commas": "heart, normal, ",
    "two-group subject + qualifier": "lungs clear ",
    "uncertainty trigger + mention": "cannot exclude pneumonia ",
    "wildcard phrase": "opacityyyyyyyyyy ",
    "terminator + mention": "but effusion ",
    "post trigger": "effusion has resolved ",
    "exclusion": "pericardial effusion ",
    "one-letter sentences": "a. ",
    "number-only pieces": "1. ",
    "sentence breaks only": ". ",
    "blank lines": "\n\n",
    "semicolons": ";",
    "commas": ",",
}


def _cpu_ms(fn, text: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn(text)
        best = min(best, time.process_time() - start)
    return best * 1000


TYPICAL = (
    "Heart size is normal. The lungs are clear. There is no pleural effusion or pneumothorax. Mild degenerative "
    "changes of the thoracic spine. Left basilar opacity may represent atelectasis. Stable 1 cm nodule in the right "
    "upper lobe. Right IJ catheter tip in the SVC. No acute cardiopulmonary process. "
)


@pytest.fixture(scope="module")
def typical_ms() -> float:
    """CPU time of 100 kB of ordinary report text on this machine right now (the load inflates CPU time too)."""
    label_report("warm up")
    return _cpu_ms(label_report, (TYPICAL * (N // len(TYPICAL) + 1))[:N])


@pytest.mark.parametrize("name", list(WORST))
def test_worst_case_100kb_within_50ms(name: str, typical_ms: float) -> None:
    """<= 50 ms of CPU per 100 kB, or (on a machine so loaded that ordinary text itself takes more than 25 ms
    per 100 kB) no more than twice ordinary text: nothing superlinear, no backtracking blow-up."""
    text = (WORST[name] * (N // len(WORST[name]) + 1))[:N]
    slowest = max(_cpu_ms(label_report, text), _cpu_ms(lambda t: list(label_values([t])), text))
    assert slowest <= max(50.0, 2 * typical_ms), (
        f"{name}: {slowest:.1f} ms CPU for 100 kB (ordinary text {typical_ms:.1f})"
    )
