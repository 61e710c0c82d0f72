"""The MeSH -> observation reference mapping and the scoring used by `medflip label-eval`."""

from __future__ import annotations

from medflip.labeler.evaluate import load_mesh_mapping, map_mesh_term, reference_labels, score
from medflip.observations import OBSERVATIONS

MAPPING = load_mesh_mapping()


def test_mesh_terms_map_through_the_table() -> None:
    assert map_mesh_term("Cardiomegaly/mild", MAPPING) == ["Cardiomegaly"]
    assert map_mesh_term("Pulmonary Atelectasis/base/left", MAPPING) == ["Atelectasis"]
    assert map_mesh_term("Opacity/lung/base/left", MAPPING) == ["Lung Opacity"]
    assert map_mesh_term("Opacity/ribs/left/anterior/round", MAPPING) == []  # not in the lung
    assert map_mesh_term("Cicatrix/pleura/apex/right", MAPPING) == ["Pleural Other"]
    assert map_mesh_term("Costophrenic Angle/left/blunted", MAPPING) == ["Pleural Effusion"]
    assert sorted(map_mesh_term("Hydropneumothorax", MAPPING)) == ["Pleural Effusion", "Pneumothorax"]
    assert map_mesh_term("Calcified Granuloma/lung/upper lobe/right", MAPPING) == []


def test_reference_no_finding() -> None:
    assert reference_labels(["normal"], MAPPING) == {"No Finding"}
    assert reference_labels(["Catheters, Indwelling/right"], MAPPING) == {"Support Devices", "No Finding"}
    assert reference_labels(["Scoliosis/mild"], MAPPING) == set()  # another abnormality blocks No Finding
    assert reference_labels(["No Indexing"], MAPPING) is None
    assert reference_labels([], MAPPING) is None


def test_score_counts_uncertain_both_ways() -> None:
    k = OBSERVATIONS.index("Pneumonia")
    predictions = [[None] * 14 for _ in range(25)]
    references = [{"Pneumonia"} for _ in range(25)]
    for row in predictions[:20]:
        row[k] = 1
    for row in predictions[20:]:
        row[k] = -1
    as_positive, as_negative = (
        score(predictions, references, "positive"),
        score(predictions, references, "negative"),
    )
    assert as_positive.per_observation["Pneumonia"]["recall"] == 1.0
    assert as_negative.per_observation["Pneumonia"]["recall"] == 0.8
    assert as_positive.macro_observations == ["Pneumonia"]  # only observations with >= 20 positives
