"""Hand-written sentences with the label a radiologist would expect (negation scope, hedges, exclusions...)."""

from __future__ import annotations

import numpy as np
import pytest

from medflip.labeler import label_report, label_reports, label_values, split_sentences
from medflip.labeler.engine import normalize
from medflip.observations import OBSERVATIONS


def values(text: str) -> dict:
    return {k: v for k, v in label_report(text).values.items() if v is not None}


@pytest.mark.parametrize(
    "text, observation, expected",
    [
        ("Mild cardiomegaly.", "Cardiomegaly", 1),
        ("No pleural effusion.", "Pleural Effusion", 0),
        # "no X or Y" negates Y; lists after a negation stay negated
        ("No pneumothorax or pleural effusion.", "Pleural Effusion", 0),
        ("No focal consolidation, pleural effusion, or pneumothorax.", "Pneumothorax", 0),
        ("There is no evidence of pneumothorax.", "Pneumothorax", 0),
        # when list items carry their own "no", an item without one is not negated
        ("No pleural effusion, no pneumothorax, mild cardiomegaly.", "Cardiomegaly", 1),
        ("No pleural effusion, no pneumothorax, mild cardiomegaly.", "Pneumothorax", 0),
        # scope ends at the clause: "but" and ";" stop the negation
        ("No pneumothorax, but there is a small left effusion.", "Pleural Effusion", 1),
        ("No pneumothorax; small left pleural effusion.", "Pleural Effusion", 1),
        # scope ends at the sentence
        ("No pneumothorax. Small left pleural effusion.", "Pleural Effusion", 1),
        # uncertainty (the CheXpert convention: MIMIC's hedges)
        ("Cannot exclude pneumonia.", "Pneumonia", -1),
        ("This may represent atelectasis or pneumonia.", "Pneumonia", -1),
        ("Opacity could reflect atelectasis.", "Atelectasis", -1),
        ("Findings suggestive of pulmonary edema.", "Edema", -1),
        ("Pneumonia cannot be excluded.", "Pneumonia", -1),
        ("Possible small right pleural effusion.", "Pleural Effusion", -1),
        ("Findings are suspicious for pneumonia.", "Pneumonia", -1),
        # resolved / removed is negative, both word orders
        ("The pneumothorax has resolved.", "Pneumothorax", 0),
        ("Resolved interstitial edema.", "Edema", 0),
        ("The PICC line has been removed.", "Support Devices", 0),
        # pseudo-triggers keep the finding
        ("No change in the moderate cardiomegaly.", "Cardiomegaly", 1),
        ("No focal opacity to suggest pneumonia.", "Pneumonia", 0),
        # neutral subjects need a qualifier
        ("Heart size is normal.", "Cardiomegaly", 0),
        ("The heart is enlarged.", "Cardiomegaly", 1),
        ("The heart is not enlarged.", "Cardiomegaly", 0),
        ("The cardiac silhouette is mildly enlarged.", "Cardiomegaly", 1),
        ("Mediastinal contours are normal.", "Enlarged Cardiomediastinum", 0),
        ("The mediastinum is widened.", "Enlarged Cardiomediastinum", 1),
        ("Pulmonary vascular congestion.", "Edema", 1),
        # consistent with / likely are firm readings
        ("Opacity consistent with atelectasis.", "Atelectasis", 1),
        ("Left basilar opacity, likely atelectasis.", "Atelectasis", 1),
        ("Right lower lobe consolidation.", "Consolidation", 1),
        ("Old healed left rib fractures.", "Fracture", 1),
        # structured "Finding: value" lines
        ("Pneumothorax: none.", "Pneumothorax", 0),
        ("Heart: normal size.", "Cardiomegaly", 0),
        ("The pleural effusion seen on the prior study is no longer present.", "Pleural Effusion", 0),
        ("Right internal jugular line ends in the mid SVC.", "Support Devices", 1),
        ("Right IJ central venous catheter tip in the SVC.", "Support Devices", 1),
        ("Left chest wall pacemaker with leads in the right heart.", "Support Devices", 1),
        ("Small apical pneumothorax.", "Pneumothorax", 1),
        ("Left lower lobe nodule.", "Lung Lesion", 1),
        ("Bilateral pleural thickening.", "Pleural Other", 1),
        ("Pulmonary edema.", "Edema", 1),
        ("Bibasilar airspace disease.", "Lung Opacity", 1),
        ("Bibasilar atelectasis.", "Atelectasis", 1),
    ],
)
def test_sentence_label(text: str, observation: str, expected: int) -> None:
    assert label_report(text).values[observation] == expected, label_report(text).evidence


@pytest.mark.parametrize(
    "text, observation",
    [
        ("Stable calcified granuloma in the right upper lobe.", "Lung Lesion"),  # not a lung lesion
        ("Small pericardial effusion.", "Pleural Effusion"),  # not a pleural effusion
        ("ECG leads project over the heart.", "Cardiomegaly"),  # "over the heart" is not cardiomegaly
        ("Degenerative changes of the endplates.", "Support Devices"),  # "plate" inside "endplate"
        ("The heart size is stable.", "Cardiomegaly"),  # neutral: no qualifier, no label
        ("Mediastinal contours are stable.", "Enlarged Cardiomediastinum"),
        ("Recommend CT to evaluate for pulmonary nodule.", "Lung Lesion"),
        ("Heart size is at the upper limits of normal.", "Cardiomegaly"),  # normal, at the top
        ("Expansile lesion of the right 9th rib.", "Lung Lesion"),  # a bone lesion
    ],
)
def test_not_positive(text: str, observation: str) -> None:
    assert label_report(text).values[observation] in (None, 0), label_report(text).evidence


def test_aggregation_positive_beats_uncertain_beats_negative() -> None:
    text = "No pleural effusion. Possible small left effusion. Small right pleural effusion."
    assert label_report(text).values["Pleural Effusion"] == 1
    assert label_report("No pleural effusion. Possible small left effusion.").values["Pleural Effusion"] == -1


def test_no_finding_rules() -> None:
    assert values("Heart size normal. Lungs are clear. No effusion or pneumothorax.")["No Finding"] == 1
    # support devices do not block No Finding
    normal_with_line = label_report("Right PICC tip in the SVC. Lungs are clear.").values
    assert normal_with_line["No Finding"] == 1 and normal_with_line["Support Devices"] == 1
    # any other positive or uncertain observation blocks it
    assert label_report("Mild cardiomegaly.").values["No Finding"] is None
    assert label_report("Cannot exclude pneumonia.").values["No Finding"] is None
    # abnormalities outside the 14 observations block it in the IU convention (not in the CheXpert one)
    from medflip.labeler.rules import default_rules

    iu = default_rules(convention="iu")
    for text in (
        "Emphysema.",
        "Mild scoliosis.",
        "Calcified granuloma.",
        "Small hiatal hernia.",
        "Low lung volumes.",
    ):
        assert label_report(text, iu).values["No Finding"] is None, text
        assert label_report(text).values["No Finding"] == 1, text
    # ... unless negated
    assert label_report("No emphysema. No hiatal hernia.", iu).values["No Finding"] == 1
    assert label_report("").values["No Finding"] is None


def test_deid_tokens_and_odd_punctuation() -> None:
    text = "Heart size XXXX normal.. Costophrenic XXXX blunting on the left;no pneumothorax!!"
    v = label_report(text).values
    assert v["Cardiomegaly"] == 0
    assert v["Pleural Effusion"] == 1
    assert v["Pneumothorax"] == 0
    assert label_report("XXXX XXXX XXXX.").values["No Finding"] == 1
    assert label_report("Air-space disease in the R.L.L.").values["Lung Opacity"] == 1
    assert label_report("w/o effusion").values["Pleural Effusion"] == 0


def test_abbreviations() -> None:
    assert label_report("No PTX.").values["Pneumothorax"] == 0
    assert label_report("CHF.").values["Edema"] == 1
    assert label_report("ETT and NGT in place.").values["Support Devices"] == 1


def test_evidence_names_phrase_and_trigger() -> None:
    text = "Heart size normal. No pleural effusion. Cannot exclude pneumonia."
    labels = label_report(text)
    (effusion,) = labels.evidence["Pleural Effusion"]
    assert effusion.phrase == "pleural effusion" and effusion.trigger == "no" and effusion.value == 0
    assert text[effusion.start : effusion.end] == effusion.phrase
    (pneumonia,) = labels.evidence["Pneumonia"]
    assert pneumonia.trigger == "cannot exclude" and pneumonia.value == -1
    (heart,) = labels.evidence["Cardiomegaly"]
    assert heart.phrase == "Heart size" and heart.trigger == "normal"


def test_sentence_level_labels() -> None:
    labels = label_report("1. Mild cardiomegaly. 2. No effusion.\n\nNormal lungs")
    assert [s.text for s in labels.sentences] == ["1. Mild cardiomegaly.", "2. No effusion.", "Normal lungs"]
    first, second, _ = labels.sentences
    assert first.values["Cardiomegaly"] == 1 and first.values["Pleural Effusion"] is None
    assert second.values["Pleural Effusion"] == 0 and second.values["No Finding"] == 1
    assert first.vector().dtype == np.float32 and first.vector()[OBSERVATIONS.index("Cardiomegaly")] == 1


def test_split_sentences() -> None:
    assert split_sentences("A 1.9 x 2.1 cm nodule. Second one! Third?") == [
        "A 1.9 x 2.1 cm nodule.",
        "Second one!",
        "Third?",
    ]
    assert split_sentences("") == []
    assert split_sentences(None) == []
    assert split_sentences("FINDINGS:\nclear lungs\n\nIMPRESSION:\nnormal") == [
        "FINDINGS:\nclear lungs",
        "IMPRESSION:\nnormal",
    ]


def test_vector_policies() -> None:
    labels = label_report("Possible pneumonia. Small effusion.")
    k_pna, k_eff = OBSERVATIONS.index("Pneumonia"), OBSERVATIONS.index("Pleural Effusion")
    assert labels.vector("positive")[k_pna] == 1 and labels.vector("negative")[k_pna] == 0
    assert labels.vector("ignore")[k_eff] == 1 and labels.vector().shape == (14,)


def test_batch_paths_agree_with_single() -> None:
    texts = ["Mild cardiomegaly. No effusion.", "", None, "Possible pneumonia.", "Lungs are clear."]
    singles = [label_report(t).values for t in texts]
    assert [r.values for r in label_reports(texts)] == singles
    assert [r.values for r in label_reports(texts, sentences=True)] == singles
    assert [dict(zip(OBSERVATIONS, v)) for v in label_values(texts)] == singles


def test_normalize_keeps_offsets() -> None:
    text = "İstanbul: Ünïcode — café\tXXXX"
    assert len(normalize(text)) == len(text)


def test_conventions_and_hypothetical_policy() -> None:
    from medflip.labeler.rules import default_rules

    text = "Patchy airspace disease, may reflect atelectasis or consolidation."
    chexpert = label_report(text).values  # the default convention
    assert chexpert["Atelectasis"] == -1 and chexpert["Consolidation"] == -1
    assert chexpert["Lung Opacity"] == 1  # before the hedge: not hedged
    iu = label_report(text, default_rules(convention="iu"))
    assert iu.values["Atelectasis"] is None
    (evidence,) = iu.evidence["Atelectasis"]
    assert evidence.value is None and evidence.trigger == "may"
    question = "Evaluate for pneumonia."
    assert label_report(question).values["Pneumonia"] is None
    assert label_report(question, default_rules("uncertain")).values["Pneumonia"] == -1


@pytest.mark.parametrize(
    "text, observation, chexpert, iu",
    [
        ("The heart size is borderline.", "Cardiomegaly", -1, 1),
        ("Borderline enlarged cardiac silhouette.", "Cardiomegaly", -1, 1),
        ("Heart size at the upper limits of normal.", "Cardiomegaly", 0, 0),
        ("Nodular density in the right upper lobe.", "Lung Lesion", 1, None),
        ("Nodular density in the right upper lobe.", "Lung Opacity", None, 1),
        ("Calcified granuloma.", "No Finding", 1, None),  # Other Finding blocks No Finding only in IU
        ("Emphysema.", "No Finding", 1, None),
        ("Probable right lower lobe pneumonia.", "Pneumonia", -1, 1),
        ("Likely atelectasis.", "Atelectasis", 1, 1),
        ("Lungs are not clear.", "No Finding", None, None),  # an unnamed abnormality blocks in both
    ],
)
def test_convention_differences(text: str, observation: str, chexpert, iu) -> None:
    from medflip.labeler.rules import default_rules

    assert label_report(text).values[observation] == chexpert
    assert label_report(text, default_rules(convention="iu")).values[observation] == iu


@pytest.mark.parametrize(
    "text",
    [
        "Plate-like atelectasis at the left base.",
        "Platelike opacity in the right mid lung.",
        "Discoid atelectasis in the lingula.",
        "Bibasilar plate-like opacities.",
    ],
)
def test_platelike_is_atelectasis_not_a_device(text: str) -> None:
    v = label_report(text).values
    assert v["Atelectasis"] == 1 and v["Support Devices"] is None, v


NORMAL_SENTENCES = [
    "The lungs are clear.",
    "Lungs are clear bilaterally.",
    "Clear lungs.",
    "No acute cardiopulmonary process.",
    "No acute cardiopulmonary abnormality.",
    "No evidence of acute cardiopulmonary disease.",
    "No acute intrathoracic process.",
    "Normal chest radiograph.",
    "Normal chest x-ray.",
    "Unremarkable chest radiograph.",
    "Negative chest x-ray.",
    "Normal study.",
    "Heart size is normal.",
    "The heart is normal in size.",
    "The cardiomediastinal silhouette is within normal limits.",
    "No active disease.",
    "No acute findings.",
]


@pytest.mark.parametrize("text", NORMAL_SENTENCES)
def test_normal_sentences_are_no_finding(text: str) -> None:
    """A sentence stating normality is No Finding = 1 at sentence level, so it is not an all-zero (dropped)
    training sentence, and nothing else is set."""
    (sentence,) = label_report(text).sentences
    assert sentence.values["No Finding"] == 1, text
    assert sentence.vector()[0] == 1 and sentence.vector()[1:13].sum() == 0


@pytest.mark.parametrize(
    "text",
    [
        "Evaluate for pneumonia.",  # a question, not a statement: no label at all
        "Lungs are not clear.",
        "Abnormal chest radiograph.",
        "Lungs are clear except for left basilar atelectasis.",
    ],
)
def test_not_normal_sentences(text: str) -> None:
    (sentence,) = label_report(text).sentences
    assert sentence.values["No Finding"] is None, text


def test_normality_words_do_not_swallow_triggers() -> None:
    # "clear of" is a negation trigger: the normal qualifier "clear" must not hide it
    v = label_report(
        "The lungs are grossly clear of focal airspace disease, pneumothorax or pleural effusion."
    ).values
    assert v["Lung Opacity"] == 0 and v["Pneumothorax"] == 0 and v["Pleural Effusion"] == 0
    assert label_report("Negative acute cardiopulmonary abnormality.").values["No Finding"] == 1
    assert label_report("Grossly normal heart size.").values["Cardiomegaly"] == 0
