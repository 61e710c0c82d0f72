"""The report labeler: text -> 14 CheXpert labels (1 / 0 / -1 / None), per report and per sentence.

How it works (see docs/labeler.md):

1. The text is lower-cased and every character outside a-z 0-9 . , ; : ! ? and newline becomes a space, one for
   one, so offsets in the normalised text are offsets in the original (evidence points at the user's text).
2. One compiled regex (rules.py) finds, left to right, sentence breaks, clause breaks (;) and every rule
   phrase. Each phrase has one or more roles: a mention of an observation, an exclusion (ignored), an
   attribute subject ("heart size") or qualifier ("enlarged"), a trigger, or a scope terminator.
3. Per sentence, each mention takes the value of the nearest trigger whose scope reaches it: a pre-trigger
   reaches forward and a post-trigger backward, both stopped by terminators and clause breaks (NegEx /
   ConText). Negation -> 0, uncertainty -> -1, no trigger -> 1. An attribute subject takes the value of the
   nearest matching qualifier in its clause (normal -> 0, borderline -> -1, abnormal -> 1, then triggers).
4. Aggregation (CheXpert): positive beats uncertain beats negative across mentions; No Finding = 1 only if no
   observation except Support Devices, and no "Other Finding" (emphysema, granuloma, ...), is 1 or -1.

Nothing here loops over the rule phrases: Python only sees the few regex matches of each report.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from medflip.labeler import rules as R
from medflip.observations import OBSERVATIONS, to_label_vector

NO_FINDING = 0
SUPPORT_DEVICES = OBSERVATIONS.index("Support Devices")
_N = len(R.ALL_OBSERVATIONS)
_RANK = {None: 0, 0: 1, -1: 2, 1: 3}  # positive beats uncertain beats negative beats not mentioned
_COMMA = "comma"
SCOPE_CHARS = 200  # how far a trigger or qualifier reaches (NegEx uses a window too)
_NON_TEXT = re.compile(r"[^a-z0-9.;:!?,\n]")
_LETTER = re.compile(r"[a-z]")
_MAX_CHARS = 2_000_000  # longer inputs are cut: labelling is linear, this only bounds memory and time


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why an observation got its value: the matched phrase and the trigger / qualifier that set it."""

    observation: str
    value: int | None  # None: a hypothetical mention ("evaluate for pneumonia"), not counted
    phrase: str
    trigger: str | None
    start: int  # offsets of the phrase in the report text
    end: int


@dataclass(slots=True)
class SentenceLabels:
    """One sentence with its own labels (training samples one sentence with these)."""

    text: str
    start: int
    end: int
    values: dict[str, int | None]
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)

    def vector(self, uncertain: str = "positive") -> np.ndarray:
        return to_label_vector([self.values[o] for o in OBSERVATIONS], uncertain)


@dataclass(slots=True)
class ReportLabels:
    """Labels of one report: `values` keyed by observation name, sentence-level labels and evidence."""

    text: str
    values: dict[str, int | None]
    sentences: list[SentenceLabels]
    evidence: dict[str, list[Evidence]]
    other_findings: list[Evidence] = field(default_factory=list)

    def vector(self, uncertain: str = "positive") -> np.ndarray:
        """float32 [14] in {0, 1}, uncertain mapped by the policy (medflip.observations.to_label_vector)."""
        return to_label_vector([self.values[o] for o in OBSERVATIONS], uncertain)


def normalize(text: str) -> str:
    """Lower-case and blank out punctuation, keeping the length (so offsets stay valid)."""
    low = text.lower()
    if len(low) != len(text):  # a few Unicode letters change length when lower-cased
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return _NON_TEXT.sub(" ", low)


def coerce_text(text: object) -> str:
    """Any input -> str: None / NaN / non-strings / bytes never crash (bytes are decoded leniently)."""
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        if (isinstance(text, float) and text != text) or type(text).__name__ == "NAType":  # NaN / pd.NA
            return ""
        try:
            text = str(text)
        except Exception:  # an object whose __str__ fails is "no text", not a crash
            return ""
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS]
    return text


def _crosses(a: int, b: int, positions: list[int]) -> bool:
    """Is there a position p with a <= p < b (positions sorted)?"""
    i = bisect_left(positions, a)
    return i < len(positions) and positions[i] < b


def _resolve(
    events: list, groups: list[R.AttributeGroup], trigger_value: dict, out: list, detail: list | None
) -> None:
    """Give each mention / qualified subject of one sentence its value (see the module docstring).

    events: (start, end, kind, target, phrase) in text order. Triggers and qualifiers are only looked for
    within SCOPE_CHARS of a mention (bisect on sorted positions), so the work per mention is bounded and the
    whole pass stays linear in the text length even for a 1 MB "sentence" without punctuation.
    """
    triggers, trigger_pos = [], []
    stops: list[int] = []  # clause breaks and terminators: end every trigger's scope
    commas: list[int] = []  # also end a subject's link to a qualifier ("heart size, enlarged aorta")
    quals, qual_pos = [], []
    for ev in events:
        kind = ev[2]
        if kind is R.TERMINATE:
            stops.append(ev[0])
        elif kind is _COMMA:
            commas.append(ev[0])
        elif kind is R.QUALIFIER:
            quals.append(ev)
            qual_pos.append(ev[0])
        elif kind in R.FORWARD or kind in R.BACKWARD:
            triggers.append(ev)
            trigger_pos.append(ev[0])
            if (
                kind in R.BACKWARD
            ):  # "X is not seen" also says "normal" to a subject ("hila are not enlarged")
                quals.append(ev)
                qual_pos.append(ev[0])

    # "No A, no B, mild C": when list items carry their own negation, a negation stops at the next comma
    per_item = set()
    previous = None
    for t in triggers:
        if t[2] is R.NEG_PRE:
            if (
                previous is not None
                and not _crosses(previous[1], t[0], stops)
                and _crosses(previous[1], t[0], commas)
            ):
                per_item.update((previous[0], t[0]))
            previous = t

    for ev in events:
        kind = ev[2]
        if kind is R.MENTION:
            first, last, anchor_end = ev[0], ev[0], ev[1]
            value, cause = 1, None
        elif kind is R.SUBJECT:
            group = groups[ev[3]]
            best = None
            lo_i, hi_i = (
                bisect_left(qual_pos, ev[0] - SCOPE_CHARS),
                bisect_left(qual_pos, ev[1] + SCOPE_CHARS),
            )
            for q in quals[lo_i:hi_i]:
                v = 0 if q[2] is not R.QUALIFIER else group.qualifier_values.get(q[4])
                if v is None:
                    continue
                lo, hi = (ev[1], q[0]) if q[0] >= ev[1] else (q[1], ev[0])
                if hi < lo or _crosses(lo, hi, stops) or _crosses(lo, hi, commas):
                    continue
                if best is None or hi - lo < best[0]:
                    best = (hi - lo, q, v)
            if best is None:
                continue
            _, q, value = best
            cause = q[4]
            first, last = min(ev[0], q[0]), max(ev[0], q[0])
            anchor_end = max(ev[1], q[1])
        else:
            continue
        if value != 0:
            nearest = None
            lo_i, hi_i = (
                bisect_left(trigger_pos, first - SCOPE_CHARS),
                bisect_left(trigger_pos, anchor_end + SCOPE_CHARS),
            )
            for t in triggers[lo_i:hi_i]:
                dist = None
                if t[2] in R.FORWARD and t[1] <= last and not _crosses(t[1], last, stops):
                    if not (t[0] in per_item and _crosses(t[1], first, commas)):
                        dist = first - t[1] if t[1] <= first else 0
                if t[2] in R.BACKWARD and t[0] >= anchor_end and not _crosses(anchor_end, t[0], stops):
                    dist = t[0] - anchor_end
                if dist is not None and (nearest is None or dist < nearest[0]):
                    nearest = (dist, t)
            if nearest is not None:
                t = nearest[1]
                tvalue = trigger_value[t[2]]
                value = tvalue if tvalue != -1 or value == 1 else value
                cause = t[4]
        obs = ev[3] if kind is R.MENTION else groups[ev[3]].observation
        if value is not None and _RANK[value] > _RANK[out[obs]]:
            out[obs] = value
        if detail is not None:
            detail.append((obs, value, ev[0], ev[1], cause))


def _blocks_no_finding(values: list) -> bool:
    for k in range(1, _N):
        if k != SUPPORT_DEVICES and (values[k] == 1 or values[k] == -1):
            return True
    return False


def _scan(text: str, rules: R.CompiledRules, want_detail: bool) -> tuple[list, list]:
    """Core pass over one (normalised) text.

    Returns (values[15] with No Finding set, sentences); sentences is [] unless want_detail, else a list of
    (start, end, values[15], [(obs, value, start, end, cause), ...]) in text order.
    """
    norm = normalize(text)
    values: list = [None] * _N
    sentences: list = []
    events: list = []
    groups = rules.groups
    roles_of = rules.roles
    sent_start = 0
    checked = 0  # letters were looked for up to here (keeps "1. 2. 3. ..." linear)

    def close(end: int) -> None:
        nonlocal events
        if want_detail:
            sent_values: list = [None] * _N
            detail: list = []
            if events:
                _resolve(events, groups, rules.trigger_value, sent_values, detail)
            sentences.append((sent_start, end, sent_values, detail))
        elif events:
            _resolve(events, groups, rules.trigger_value, values, None)
        events = []

    for m in rules.pattern.finditer(norm):
        group = m.lastgroup
        if group == "ph":
            start, end = m.span()
            for role in roles_of(m.group()):
                if role.kind is not R.EXCLUSION:
                    events.append((start, end, role.kind, role.target, role.phrase))
        elif group == "cm":
            events.append((m.start(), m.end(), _COMMA, -1, ","))
        elif group == "cl":
            events.append((m.start(), m.end(), R.TERMINATE, -1, ";"))
        elif _LETTER.search(norm, checked, m.start()) is not None:  # "1." alone joins the next sentence
            close(m.end())
            sent_start = checked = m.end()
        else:
            checked = m.end()
    if _LETTER.search(norm, sent_start) is not None or events:
        close(len(norm))
    elif want_detail and sentences and sent_start < len(norm):  # trailing punctuation joins the last sentence
        last = sentences[-1]
        sentences[-1] = (last[0], len(norm), last[2], last[3])
    if want_detail:
        for _, _, sent_values, _ in sentences:
            for k in range(_N):
                if _RANK[sent_values[k]] > _RANK[values[k]]:
                    values[k] = sent_values[k]
    if _LETTER.search(norm) is not None and not _blocks_no_finding(values):
        values[NO_FINDING] = 1
    return values, sentences


def split_sentences(text: object) -> list[str]:
    """Sentences of a report, as the labeler sees them (same breaks as `label_report(...).sentences`).

    Breaks after . ! ? followed by a space or the end (not inside "1.9 cm"), and at blank lines; a piece with
    no letters (a list number "2.") joins the next sentence. Stripped; empty ones dropped.
    """
    return [s.text for s in label_report(text).sentences]


def _evidence(text: str, obs: int, value: int | None, start: int, end: int, cause: str | None) -> Evidence:
    return Evidence(R.ALL_OBSERVATIONS[obs], value, text[start:end], cause, start, end)


def _values_dict(values: list) -> dict[str, int | None]:
    return dict(zip(OBSERVATIONS, values))


def _build_report(text: str, values: list, sentences: list) -> ReportLabels:
    report_evidence: dict[str, list[Evidence]] = {}
    other: list[Evidence] = []
    sentence_labels = []
    for start, end, sent_values, detail in sentences:
        sentence_evidence: dict[str, list[Evidence]] = {}
        for obs, value, s, e, cause in detail:
            ev = _evidence(text, obs, value, s, e, cause)
            if obs == R.OTHER_INDEX:
                other.append(ev)
            else:
                sentence_evidence.setdefault(ev.observation, []).append(ev)
                report_evidence.setdefault(ev.observation, []).append(ev)
        if detail and not _blocks_no_finding(sent_values):
            sent_values[NO_FINDING] = 1
        raw = text[start:end]
        stripped = raw.strip()
        if not stripped:
            continue
        offset = start + (len(raw) - len(raw.lstrip()))
        sentence_labels.append(
            SentenceLabels(
                stripped, offset, offset + len(stripped), _values_dict(sent_values), sentence_evidence
            )
        )
    if values[NO_FINDING] == 1:
        report_evidence["No Finding"] = [
            Evidence("No Finding", 1, "", "no positive or uncertain finding", 0, 0)
        ]
    return ReportLabels(text, _values_dict(values), sentence_labels, report_evidence, other)


def label_report(text: object, rules: R.CompiledRules | None = None) -> ReportLabels:
    """Label one report (any input: None, bytes, NaN, huge or odd-Unicode text never raise)."""
    text = coerce_text(text)
    values, sentences = _scan(text, rules or R.default_rules(), True)
    return _build_report(text, values, sentences)


def label_values(texts: Iterable[object], rules: R.CompiledRules | None = None) -> Iterator[list]:
    """Fast path: report-level values only, as lists of 14 (1 / 0 / -1 / None), in OBSERVATIONS order."""
    rules = rules or R.default_rules()
    for text in texts:
        values, _ = _scan(coerce_text(text), rules, False)
        yield values[: len(OBSERVATIONS)]


def label_reports(
    texts: Iterable[object],
    sentences: bool = False,
    progress: bool = False,
    rules: R.CompiledRules | None = None,
) -> list[ReportLabels]:
    """Label many reports. sentences=False skips sentence-level labels and evidence (the fast path)."""
    rules = rules or R.default_rules()
    items: Iterable[object] = texts
    if progress:
        from tqdm import tqdm

        items = tqdm(texts, desc="labelling", unit="report")
    out = []
    for raw in items:
        text = coerce_text(raw)
        values, detail = _scan(text, rules, sentences)
        if sentences:
            out.append(_build_report(text, values, detail))
        else:
            out.append(ReportLabels(text, _values_dict(values), [], {}))
    return out
