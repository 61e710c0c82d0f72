"""Zero-shot prompt generation: seeded, complete, and every combination reads as a phrase."""

import itertools

import pytest

from medflip.evaluate.prompts import CHEXPERT_PROMPT_PARTS, binary_prompts, chexpert_prompts


def test_chexpert_prompts_seeded_distinct_and_from_the_parts():
    classes = list(CHEXPERT_PROMPT_PARTS)
    a = chexpert_prompts(classes, n_per_class=7, seed=3)
    assert a == chexpert_prompts(classes, n_per_class=7, seed=3)
    assert a != chexpert_prompts(classes, n_per_class=7, seed=4)
    for name, prompts in a.items():
        parts = CHEXPERT_PROMPT_PARTS[name]
        allowed = {" ".join(w for w in c if w) for c in itertools.product(*parts.values())}
        assert len(prompts) == min(7, len(allowed)) == len(set(prompts))
        assert set(prompts) <= allowed


def test_no_prompt_repeats_a_word():
    """Severity, subtype and location must not say the same thing twice ("airspace airspace consolidation")."""
    for name, parts in CHEXPERT_PROMPT_PARTS.items():
        for combo in itertools.product(*parts.values()):
            words = [w for w in " ".join(combo).split() if len(w) > 3]
            assert len(words) == len(set(words)), (name, combo)


def test_unknown_class_is_a_clear_error():
    with pytest.raises(KeyError, match="known"):
        chexpert_prompts(["Atelectasis", "Hernia"])
    with pytest.raises(KeyError, match="known"):
        binary_prompts("Hernia")
    assert set(binary_prompts("Pneumonia")) == {"Normal", "Pneumonia"}
