"""Knowledge extraction (docs/labeler.md): a fast rule-based CheXpert-style report labeler.

    from medflip.labeler import label_report
    labels = label_report("Mild cardiomegaly. No pleural effusion or pneumothorax.")
    labels.values["Cardiomegaly"]        # 1
    labels.values["Pleural Effusion"]    # 0
    labels.values["Edema"]               # None (not mentioned)
    labels.evidence["Pleural Effusion"]  # [Evidence(phrase='pleural effusion', trigger='no', ...)]
    labels.vector(uncertain="positive")  # float32 [14] for the soft targets

Rules are data files in `medflip/labeler/rules/`; docs/labeler.md explains them.
"""

from medflip.labeler.engine import (
    Evidence,
    ReportLabels,
    SentenceLabels,
    label_report,
    label_reports,
    label_values,
    split_sentences,
)

__all__ = [
    "Evidence",
    "ReportLabels",
    "SentenceLabels",
    "label_report",
    "label_reports",
    "label_values",
    "split_sentences",
]
