"""A MIMIC-CXR-style phrase suite: sentences written the way MIMIC-CXR reports are worded, each with the labels the
CheXpert labeler's convention gives it (medflip's default convention).

Each case lists the observations the sentence mentions with their value (1 positive, 0 negative, -1 uncertain);
every other observation is expected blank (not mentioned). No Finding follows the CheXpert definition: 1 when the
sentence has text and no observation other than Support Devices is 1 or -1, blank otherwise. The expected values
were written from how MIMIC radiologists word findings, not read off the labeler.

`python tests/test_labeler_mimic_suite.py` prints the accuracy and every miss. The test requires at least
SUITE_MIN_ACCURACY of the sentences to be labelled exactly (all 14 values).
"""

from __future__ import annotations

import sys

from medflip.labeler import label_report
from medflip.observations import OBSERVATIONS

EC, CM, LO, LL = "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion"
ED, CO, PN, AT = "Edema", "Consolidation", "Pneumonia", "Atelectasis"
PX, EF, PO, FX, SD = "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices"

SUITE_MIN_ACCURACY = 0.93

SUITE: list[tuple[str, dict[str, int]]] = [
    # --- normal studies and normal statements
    ("No acute cardiopulmonary process.", {}),
    ("No acute intrathoracic process.", {}),
    ("No acute cardiopulmonary abnormality.", {}),
    ("No radiographic evidence of acute cardiopulmonary disease.", {}),
    ("Normal chest radiograph.", {}),
    ("The lungs are clear.", {}),
    ("Lungs are clear without focal consolidation, effusion, or pneumothorax.", {CO: 0, EF: 0, PX: 0}),
    ("The lungs are well expanded and clear.", {}),
    ("Heart size is normal.", {CM: 0}),
    ("The heart size is normal.", {CM: 0}),
    ("Normal heart size.", {CM: 0}),
    ("The cardiomediastinal silhouette is within normal limits.", {EC: 0, CM: 0}),
    ("Mediastinal and hilar contours are normal.", {EC: 0}),
    ("Normal cardiomediastinal and hilar contours.", {EC: 0, CM: 0}),
    ("The mediastinal contours are unremarkable.", {EC: 0}),
    ("Pulmonary vasculature is normal.", {ED: 0}),
    ("Pulmonary vascularity is within normal limits.", {ED: 0}),
    ("No pleural effusion or pneumothorax.", {EF: 0, PX: 0}),
    ("No pneumothorax, pleural effusion, or focal consolidation.", {PX: 0, EF: 0, CO: 0}),
    ("There is no focal consolidation, pleural effusion or pneumothorax.", {CO: 0, EF: 0, PX: 0}),
    ("There is no pneumothorax.", {PX: 0}),
    ("No focal consolidation is seen.", {CO: 0}),
    ("No evidence of pneumonia.", {PN: 0}),
    ("No pulmonary edema.", {ED: 0}),
    ("There is no pulmonary edema.", {ED: 0}),
    ("No signs of pneumonia or pulmonary edema.", {PN: 0, ED: 0}),
    ("No large pleural effusion.", {EF: 0}),
    ("No displaced fractures are identified.", {FX: 0}),
    ("No acute osseous abnormalities.", {}),
    ("No free air below the right hemidiaphragm.", {}),
    ("Clear lungs.", {}),
    ("Heart size and mediastinum are within normal limits.", {CM: 0, EC: 0}),
    # --- cardiomegaly and cardiomediastinum
    ("Moderate cardiomegaly is stable.", {CM: 1}),
    ("The heart is mildly enlarged.", {CM: 1}),
    ("Mild enlargement of the cardiac silhouette is unchanged.", {CM: 1}),
    ("Heart size is top normal.", {CM: 0}),
    ("The heart size is borderline.", {CM: -1}),
    ("Stable cardiomegaly.", {CM: 1}),
    ("Severe cardiomegaly is re-demonstrated.", {CM: 1}),
    ("The cardiac silhouette is enlarged.", {CM: 1}),
    ("Heart size is at the upper limits of normal.", {CM: 0}),
    ("The mediastinum is widened.", {EC: 1}),
    ("Widening of the mediastinum is concerning for mediastinal hematoma.", {EC: 1}),
    ("Cardiomegaly is not significantly changed.", {CM: 1}),
    ("No cardiomegaly.", {CM: 0}),
    ("Enlarged cardiac silhouette.", {CM: 1}),
    # --- edema
    ("Mild pulmonary edema.", {ED: 1}),
    ("Moderate pulmonary edema has worsened.", {ED: 1}),
    ("Interstitial edema is slightly improved.", {ED: 1}),
    ("Pulmonary edema has resolved.", {ED: 0}),
    ("Findings are consistent with mild interstitial edema.", {ED: 1}),
    ("Possible mild pulmonary edema.", {ED: -1}),
    ("There is no pulmonary vascular congestion.", {ED: 0}),
    ("Mild interstitial pulmonary edema is unchanged.", {ED: 1}),
    ("Findings suggestive of mild fluid overload.", {ED: -1}),
    ("Perihilar haziness may reflect mild edema.", {LO: 1, ED: -1}),
    ("Congestive heart failure with moderate pulmonary edema.", {ED: 1}),
    ("Cephalization of the pulmonary vasculature.", {ED: 1}),
    # --- pleural effusion
    ("Small bilateral pleural effusions.", {EF: 1}),
    ("Small left pleural effusion is unchanged.", {EF: 1}),
    ("Trace right pleural effusion.", {EF: 1}),
    ("Moderate right pleural effusion has increased in size.", {EF: 1}),
    ("Layering bilateral pleural effusions.", {EF: 1}),
    ("Blunting of the left costophrenic angle likely reflects a small effusion.", {EF: 1}),
    ("Possible small left pleural effusion.", {EF: -1}),
    ("A tiny right pleural effusion cannot be excluded.", {EF: -1}),
    ("Right pleural effusion has resolved.", {EF: 0}),
    ("The left pleural effusion has decreased.", {EF: 1}),
    ("Small pleural effusions are noted bilaterally.", {EF: 1}),
    ("There is a small right pleural effusion.", {EF: 1}),
    ("Loculated right pleural effusion.", {EF: 1}),
    ("Small left effusion may be present.", {EF: -1}),
    ("Pleural effusions are minimal if any.", {EF: -1}),
    # --- pneumothorax
    ("Small right apical pneumothorax.", {PX: 1}),
    ("There is a small left apical pneumothorax.", {PX: 1}),
    ("The right pneumothorax is slightly smaller.", {PX: 1}),
    ("No pneumothorax is seen.", {PX: 0}),
    ("No evidence of pneumothorax.", {PX: 0}),
    ("The previously seen pneumothorax has resolved.", {PX: 0}),
    ("Tiny right apical pneumothorax cannot be excluded.", {PX: -1}),
    ("Possible tiny left apical pneumothorax.", {PX: -1}),
    ("No pneumothorax following chest tube removal.", {PX: 0, SD: 0}),
    # --- atelectasis
    ("Bibasilar atelectasis.", {AT: 1}),
    ("Mild bibasilar atelectasis.", {AT: 1}),
    ("Plate-like atelectasis at the left base.", {AT: 1}),
    ("Platelike atelectasis in the right midlung.", {AT: 1}),
    ("Linear atelectasis at the lung bases.", {AT: 1}),
    ("Left basilar opacity likely reflects atelectasis.", {LO: 1, AT: 1}),
    ("Left basilar opacity could reflect atelectasis.", {LO: 1, AT: -1}),
    ("Subsegmental atelectasis in the left lower lobe.", {AT: 1}),
    ("Minimal atelectasis at the right base.", {AT: 1}),
    ("Left lower lobe collapse.", {AT: 1}),
    ("Discoid atelectasis in the lingula.", {AT: 1}),
    ("Retrocardiac opacity may reflect atelectasis.", {LO: 1, AT: -1}),
    ("Bibasilar opacities likely atelectasis.", {LO: 1, AT: 1}),
    ("There is no atelectasis.", {AT: 0}),
    ("Streaky opacities in the lung bases are compatible with atelectasis.", {LO: 1, AT: 1}),
    # --- pneumonia / consolidation / opacity
    ("Right lower lobe pneumonia.", {PN: 1}),
    ("Findings concerning for right lower lobe pneumonia.", {PN: -1}),
    ("Right lower lobe opacity may represent pneumonia.", {LO: 1, PN: -1}),
    ("Left lower lobe consolidation concerning for pneumonia.", {CO: 1, PN: -1}),
    ("Opacity at the right base could reflect atelectasis or pneumonia.", {LO: 1, AT: -1, PN: -1}),
    (
        "Patchy opacity in the left lower lobe may represent atelectasis, though pneumonia cannot be excluded.",
        {LO: 1, AT: -1, PN: -1},
    ),
    ("Pneumonia cannot be excluded.", {PN: -1}),
    ("Cannot exclude early pneumonia.", {PN: -1}),
    ("Findings suggestive of pneumonia.", {PN: -1}),
    ("Possible right middle lobe pneumonia.", {PN: -1}),
    ("Multifocal pneumonia.", {PN: 1}),
    ("Right upper lobe consolidation.", {CO: 1}),
    ("Dense consolidation in the left lower lobe.", {CO: 1}),
    ("Patchy bibasilar airspace opacities.", {LO: 1}),
    ("Bilateral airspace opacities.", {LO: 1}),
    ("Diffuse bilateral interstitial opacities.", {LO: 1}),
    ("Ill-defined opacity in the right lower lung.", {LO: 1}),
    ("There is a new opacity at the left base.", {LO: 1}),
    ("Hazy opacity in the right lung base.", {LO: 1}),
    ("Ground-glass opacity in both lungs.", {LO: 1}),
    ("No focal airspace consolidation to suggest pneumonia.", {CO: 0, PN: 0}),
    ("The right lower lobe pneumonia has improved.", {PN: 1}),
    ("Resolution of the left lower lobe pneumonia.", {PN: 0}),
    ("Aspiration is possible.", {PN: -1}),
    ("Infection cannot be excluded.", {PN: -1}),
    ("Consolidation in the right lower lobe suspicious for pneumonia.", {CO: 1, PN: -1}),
    ("Opacities may be due to atelectasis or aspiration.", {LO: 1, AT: -1, PN: -1}),
    ("Probable left lower lobe pneumonia.", {PN: -1}),
    ("Worsening right basilar consolidation.", {CO: 1}),
    ("Airspace disease in the right upper lobe.", {LO: 1}),
    # --- lesions
    ("A 1.2 cm nodule in the right upper lobe.", {LL: 1}),
    ("Right upper lobe mass.", {LL: 1}),
    ("Nodular opacity in the left midlung.", {LL: 1}),
    ("Nodular opacities in both lungs.", {LL: 1}),
    ("Multiple pulmonary nodules are again seen.", {LL: 1}),
    ("A nodular density projects over the left lower lobe.", {LL: 1}),
    ("No suspicious pulmonary nodules.", {LL: 0}),
    ("Known right upper lobe mass is unchanged.", {LL: 1}),
    ("Cavitary lesion in the left upper lobe.", {LL: 1}),
    ("Possible right lower lobe nodule.", {LL: -1}),
    # --- pleural other
    ("Biapical pleural thickening.", {PO: 1}),
    ("Calcified pleural plaques.", {PO: 1}),
    ("Blunting of the right costophrenic angle likely reflects pleural thickening.", {EF: 1, PO: 1}),
    ("Mild pleural thickening at the left base.", {PO: 1}),
    # --- fractures
    ("Healed right rib fractures.", {FX: 1}),
    ("Old left-sided rib fractures.", {FX: 1}),
    ("Acute fracture of the left seventh rib.", {FX: 1}),
    ("No acute fracture is identified.", {FX: 0}),
    ("Possible nondisplaced fracture of the right eighth rib.", {FX: -1}),
    ("Compression fracture of a lower thoracic vertebral body.", {FX: 1}),
    ("Multiple old rib fractures on the left.", {FX: 1}),
    # --- support devices
    ("Endotracheal tube terminates 4 cm above the carina.", {SD: 1}),
    ("The endotracheal tube tip is 5 cm above the carina.", {SD: 1}),
    ("Nasogastric tube courses below the diaphragm with the tip in the stomach.", {SD: 1}),
    ("Enteric tube tip is in the stomach.", {SD: 1}),
    ("Right internal jugular central venous catheter terminates in the mid SVC.", {SD: 1}),
    ("Left PICC line tip is at the cavoatrial junction.", {SD: 1}),
    ("Left-sided pacemaker with leads in the right atrium and right ventricle.", {SD: 1}),
    ("Dual-chamber pacemaker leads are unchanged in position.", {SD: 1}),
    ("Right chest tube remains in place.", {SD: 1}),
    ("Median sternotomy wires and mediastinal clips are noted.", {SD: 1}),
    ("The Swan-Ganz catheter tip is in the right pulmonary artery.", {SD: 1}),
    ("Tracheostomy tube is in standard position.", {SD: 1}),
    ("Interval removal of the endotracheal tube.", {SD: 0}),
    ("The nasogastric tube has been removed.", {SD: 0}),
    ("Left subclavian line ends in the proximal SVC.", {SD: 1}),
    ("Right IJ catheter tip in the low SVC. No pneumothorax.", {SD: 1, PX: 0}),
    ("Feeding tube terminates in the duodenum.", {SD: 1}),
    # --- mixed sentences
    (
        "Mild cardiomegaly with small bilateral pleural effusions and mild pulmonary edema.",
        {CM: 1, EF: 1, ED: 1},
    ),
    ("Small left pleural effusion with adjacent atelectasis.", {EF: 1, AT: 1}),
    ("Moderate cardiomegaly and mild pulmonary vascular congestion.", {CM: 1, ED: 1}),
    (
        "Bibasilar opacities likely reflect atelectasis, though superimposed infection cannot be excluded.",
        {LO: 1, AT: 1, PN: -1},
    ),
    ("No pneumothorax; small right pleural effusion.", {PX: 0, EF: 1}),
    ("No pleural effusion, but there is left basilar atelectasis.", {EF: 0, AT: 1}),
    ("Stable mild cardiomegaly without pulmonary edema.", {CM: 1, ED: 0}),
    ("Small bilateral effusions with bibasilar atelectasis, not significantly changed.", {EF: 1, AT: 1}),
    ("Heart size is normal without pleural effusion or pneumothorax.", {CM: 0, EF: 0, PX: 0}),
    ("Left lower lobe collapse and moderate left pleural effusion.", {AT: 1, EF: 1}),
    (
        "Right basilar opacity may reflect pneumonia or aspiration in the appropriate clinical setting.",
        {LO: 1, PN: -1},
    ),
    ("Low lung volumes with bronchovascular crowding.", {}),
    ("Hyperinflated lungs consistent with emphysema.", {}),
    ("Calcified granuloma in the right upper lobe.", {}),
    ("Degenerative changes of the thoracic spine.", {}),
    ("The aorta is tortuous.", {}),
    ("Small hiatal hernia.", {}),
]


def expected_values(findings: dict[str, int]) -> list[int | None]:
    values: list[int | None] = [findings.get(o) for o in OBSERVATIONS]
    blocking = any(v in (1, -1) for o, v in findings.items() if o != SD)
    values[0] = None if blocking else 1
    return values


def run_suite() -> tuple[float, list[tuple[str, list, list]]]:
    misses = []
    for text, findings in SUITE:
        got = [label_report(text).values[o] for o in OBSERVATIONS]
        want = expected_values(findings)
        if got != want:
            misses.append((text, want, got))
    return 1 - len(misses) / len(SUITE), misses


def test_suite_is_large_and_well_formed() -> None:
    assert len(SUITE) >= 150
    assert len({text for text, _ in SUITE}) == len(SUITE)
    for _, findings in SUITE:
        assert set(findings) <= set(OBSERVATIONS[1:]) and set(findings.values()) <= {1, 0, -1}


def test_mimic_suite_accuracy() -> None:
    accuracy, misses = run_suite()
    report = "\n".join(f"{text}\n  want {want}\n  got  {got}" for text, want, got in misses)
    assert accuracy >= SUITE_MIN_ACCURACY, f"accuracy {accuracy:.3f}\n{report}"


if __name__ == "__main__":
    accuracy, misses = run_suite()
    for text, want, got in misses:
        diff = {o: (w, g) for o, w, g in zip(OBSERVATIONS, want, got) if w != g}
        print(f"MISS {text}\n     expected -> got: {diff}")
    print(f"MIMIC-style suite: {len(SUITE) - len(misses)}/{len(SUITE)} sentences exact ({accuracy:.3f})")
    sys.exit(0)
