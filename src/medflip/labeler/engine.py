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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from tqdm import tqdm

from medflip.labeler import rules as R
from medflip.observations import OBSERVATIONS, to_label_vector

if TYPE_CHECKING:  # numpy is imported only when a vector is asked for (fast `medflip label` start-up)
    import numpy as np

NO_FINDING = 0
SUPPORT_DEVICES = OBSERVATIONS.index("Support Devices")
_N = len(R.ALL_OBSERVATIONS)
_RANK = {None: 0, 0: 1, -1: 2, 1: 3}  # positive beats uncertain beats negative beats not mentioned
_PUNCT = re.compile(r"[,;]")
_NO_DETAIL: list = []  # shared by every sentence that mentions nothing (never appended to)
# Shared read-only labels of a sentence that mentions nothing: a report of 30,000 one-word sentences must not
# allocate 30,000 dicts (issue: no report of <= 100 kB takes more than 50 ms).
_BLANK_VALUES: Mapping[str, int | None] = MappingProxyType(dict.fromkeys(OBSERVATIONS))
_NO_EVIDENCE: Mapping[str, list] = MappingProxyType({})
SCOPE_CHARS = 200  # how far a trigger or qualifier reaches (NegEx uses a window too)
_NON_TEXT = re.compile(r"[^a-z0-9.;:!?,\n]")
_LETTER = re.compile(r"[a-z]")
_MAX_CHARS = 2_000_000  # longer inputs are cut: labelling is linear, this only bounds memory and time


class Evidence(NamedTuple):
    """Why an observation got its value: the matched phrase and the trigger / qualifier that set it.

    A NamedTuple (immutable, cheap to create: a report can hold tens of thousands of mentions)."""

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
    values: Mapping[str, int | None]  # read-only (shared) for a sentence that mentions nothing
    evidence: Mapping[str, list[Evidence]] = field(default_factory=dict)

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
    events: list, rules: R.CompiledRules, out: list, detail: list | None, commas: list, semicolons: list
) -> None:
    """Give each mention / qualified subject of one sentence its value (see the module docstring).

    events: (start, end, kind, target, phrase) in text order. For each mention only the nearest candidates are
    looked at, found by bisection: the nearest forward trigger to its left, the nearest backward trigger to its
    right, the nearest qualifier of the subject's own group on either side (a nearer one blocked by a clause
    break means every farther one is blocked too). So a mention costs O(log n) whatever the text around it
    ("no no no ... effusion", "heart normal heart normal ..."), and nothing is looked for beyond SCOPE_CHARS.
    tests/test_labeler_reference.py checks this against the plain "scan every candidate" definition.
    """
    groups = rules.groups
    trigger_value = rules.trigger_value
    qualifier_groups = rules.qualifier_groups
    fwd: list = []  # triggers reaching forward, in text order (their ends are sorted too: matches never overlap)
    fwd_end: list[int] = []
    bwd: list = []  # triggers reaching backward; they also say "normal" to a subject ("hila are not enlarged")
    bwd_start: list[int] = []
    # stops: clause breaks (";") and terminators end every trigger's scope; commas (sorted positions) also end a
    # subject's link to a qualifier ("heart size, enlarged aorta")
    stops: list[int] = []
    quals: list = []
    subject_groups = set()
    neg_pre: list = []
    targets = False
    for ev in events:
        kind = ev[2]
        if kind is R.MENTION:
            targets = True
        elif kind is R.TERMINATE:
            stops.append(ev[0])
        elif kind is R.QUALIFIER:
            quals.append(ev)
        elif kind is R.SUBJECT:
            subject_groups.add(ev[3])
            targets = True
        elif kind in R.FORWARD or kind in R.BACKWARD:
            if kind in R.FORWARD:
                fwd.append(ev)
                fwd_end.append(ev[1])
                if kind is R.NEG_PRE:
                    neg_pre.append(ev)
            if kind in R.BACKWARD:
                bwd.append(ev)
                bwd_start.append(ev[0])

    if not targets:  # only triggers / qualifiers ("no no no ..."): nothing to give a value
        return
    if semicolons:
        stops = sorted(stops + semicolons)
    # qualifiers per attribute group, only for the groups of this sentence's subjects: [(start, event, value)]
    by_group: dict[int, tuple[list[int], list]] = {}
    if subject_groups:
        for g in subject_groups:
            by_group[g] = ([], [])
        for q in quals:
            for g, v in qualifier_groups.get(q[4], ()):
                if g in by_group:
                    starts, items = by_group[g]
                    starts.append(q[0])
                    items.append((q, v))

    # "No A, no B, mild C": when list items carry their own negation, a negation stops at the next comma
    per_item = set()
    previous = None
    for t in neg_pre:
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
            found = _nearest_qualifier(ev, by_group[ev[3]], bwd, bwd_start, stops, commas)
            if found is None:
                continue
            q, value = found
            cause = q[4]
            first, last = min(ev[0], q[0]), max(ev[0], q[0])
            anchor_end = max(ev[1], q[1])
        else:
            continue
        if value != 0:
            t = _nearest_trigger(
                first, last, anchor_end, fwd, fwd_end, bwd, bwd_start, stops, commas, per_item
            )
            if t is not None:
                tvalue = trigger_value[t[2]]
                value = tvalue if tvalue != -1 or value == 1 else value
                cause = t[4]
        obs = ev[3] if kind is R.MENTION else groups[ev[3]].observation
        if value is not None and _RANK[value] > _RANK[out[obs]]:
            out[obs] = value
        if detail is not None:
            detail.append((obs, value, ev[0], ev[1], cause))


def _nearest_qualifier(
    ev: tuple, group_quals: tuple[list[int], list], bwd: list, bwd_start: list[int], stops: list, commas: list
) -> tuple | None:
    """(qualifier event, value) nearest to subject `ev` in its clause, not across a comma, within SCOPE_CHARS:
    a qualifier of the subject's group or a backward trigger (value 0). Ties go to the left one."""
    start, end = ev[0], ev[1]
    best_key = best = None
    for starts, items, is_trigger in ((group_quals[0], group_quals[1], False), (bwd_start, bwd, True)):
        if not starts:
            continue
        i = bisect_left(starts, end)
        j = i - 1  # left: the nearest candidate that ends at or before the subject's start
        while j >= 0 and (bwd[j] if is_trigger else items[j][0])[1] > start:
            j -= 1
        for k in (j, i):
            if k < 0 or k >= len(starts):
                continue
            q, v = (bwd[k], 0) if is_trigger else items[k]
            q0 = q[0]
            if q0 >= end:
                if q0 >= end + SCOPE_CHARS:
                    continue
                lo, hi = end, q0
            else:
                if q0 < start - SCOPE_CHARS:
                    continue
                lo, hi = q[1], start
            if stops and _crosses(lo, hi, stops) or commas and _crosses(lo, hi, commas):
                continue
            key = (hi - lo, q0)
            if best_key is None or key < best_key:
                best_key, best = key, (q, v)
    return best


def _nearest_trigger(
    first: int,
    last: int,
    anchor_end: int,
    fwd: list,
    fwd_end: list[int],
    bwd: list,
    bwd_start: list[int],
    stops: list,
    commas: list,
    per_item: set,
) -> tuple | None:
    """The trigger whose scope reaches a mention spanning [first, anchor_end) (`last`: start of its last part).

    A forward trigger must end at or before `last` with no clause break between (distance first - end, 0 when
    it sits inside the mention: "heart is not enlarged"); a backward trigger must start at or after
    `anchor_end` with no break between. The nearest wins; ties go to the leftmost trigger."""
    best = None
    lo_start = first - SCOPE_CHARS
    # forward triggers that end inside [first, last]: distance 0, leftmost valid one
    i = bisect_left(fwd_end, first)
    top = bisect_left(fwd_end, last + 1)
    for k in range(i, top):
        t = fwd[k]
        if t[0] >= lo_start and not _crosses(t[1], last, stops):
            if not (t[0] in per_item and _crosses(t[1], first, commas)):
                best = (0, t)
                break
    if best is None:
        # forward triggers ending before the mention: walk left from the nearest
        k = i - 1
        while k >= 0:
            t = fwd[k]
            if t[0] < lo_start or _crosses(t[1], last, stops):
                break  # out of reach, and so is every trigger farther left
            if not (t[0] in per_item and _crosses(t[1], first, commas)):
                best = (first - t[1], t)
                break
            k -= 1
    # the nearest backward trigger at or after the mention's end
    k = bisect_left(bwd_start, anchor_end)
    if k < len(bwd_start):
        t = bwd[k]
        if t[0] < anchor_end + SCOPE_CHARS and not _crosses(anchor_end, t[0], stops):
            dist = t[0] - anchor_end
            if best is None or dist < best[0]:
                best = (dist, t)
    return None if best is None else best[1]


def _blocks_no_finding(values: list, other_blocks: bool = True) -> bool:
    """Is an observation (not Support Devices) positive or uncertain? Other Finding counts if `other_blocks`."""
    for k in range(1, _N):
        if k == SUPPORT_DEVICES or (k == R.OTHER_INDEX and not other_blocks):
            continue
        if values[k] == 1 or values[k] == -1:
            return True
    return False


def _states_something(detail: list) -> bool:
    """Does a sentence state a finding (even a negated one or a normality)? A hypothetical mention alone
    ("evaluate for pneumonia", value None) states nothing."""
    for item in detail:
        if item[1] is not None:
            return True
    return False


def _scan(text: str, rules: R.CompiledRules, want_detail: bool) -> tuple[list, list]:
    """Core pass over one (normalised) text.

    Returns (values[16] with No Finding set, sentences); sentences is [] unless want_detail, else a list of
    (start, end, values[16] or None when nothing was mentioned, [(obs, value, start, end, cause), ...]).
    Commas and semicolons are not in the scanning regex: they are only looked up (one C-level pass over the
    sentence) in sentences that mention something, so ",,,,," or ";;;;;" costs nothing per character in Python.
    """
    norm = normalize(text)
    values: list = [None] * _N
    sentences: list = []
    events: list = []
    roles_of = rules.roles
    punct = _PUNCT.finditer
    sent_start = 0
    checked = 0  # letters were looked for up to here (keeps "1. 2. 3. ..." linear)
    letter = _LETTER.search
    for m in rules.pattern.finditer(norm):
        if m.lastgroup == "ph":
            start, end = m.span()
            for role in roles_of(m.group()):
                if role.kind is not R.EXCLUSION:
                    events.append((start, end, role.kind, role.target, role.phrase))
            continue
        brk_start, brk_end = m.span()
        if letter(norm, checked, brk_start) is None:  # "1." alone joins the next sentence
            checked = brk_end
            continue
        if events:
            commas, semis = [], []
            for p in punct(norm, sent_start, brk_start):
                (commas if p.group() == "," else semis).append(p.start())
            if want_detail:
                sent_values: list | None = [None] * _N
                detail: list = []
                _resolve(events, rules, sent_values, detail, commas, semis)
                sentences.append((sent_start, brk_end, sent_values, detail))
            else:
                _resolve(events, rules, values, None, commas, semis)
            events = []
        elif want_detail:
            sentences.append((sent_start, brk_end, None, _NO_DETAIL))
        sent_start = checked = brk_end
    if events or letter(norm, sent_start) is not None:
        commas, semis = [], []
        for p in punct(norm, sent_start):
            (commas if p.group() == "," else semis).append(p.start())
        if want_detail:
            sent_values = [None] * _N
            detail = []
            if events:
                _resolve(events, rules, sent_values, detail, commas, semis)
            sentences.append((sent_start, len(norm), sent_values if events else None, detail))
        elif events:
            _resolve(events, rules, values, None, commas, semis)
    elif want_detail and sentences and sent_start < len(norm):  # trailing punctuation joins the last sentence
        last = sentences[-1]
        sentences[-1] = (last[0], len(norm), last[2], last[3])
    if want_detail:
        for _, _, sent_values, _ in sentences:
            if sent_values is not None:
                for k in range(_N):
                    if _RANK[sent_values[k]] > _RANK[values[k]]:
                        values[k] = sent_values[k]
    values[NO_FINDING] = None  # set below, never by a mention
    if letter(norm) is not None and not _blocks_no_finding(values, rules.other_blocks_no_finding):
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


def _build_report(text: str, values: list, sentences: list, other_blocks: bool) -> ReportLabels:
    report_evidence: dict[str, list[Evidence]] = {}
    other: list[Evidence] = []
    sentence_labels = []
    for start, end, sent_values, detail in sentences:
        raw = text[start:end]
        stripped = raw.strip()
        if sent_values is None:  # nothing mentioned: all blank
            if stripped:
                offset = start + (len(raw) - len(raw.lstrip()))
                sentence_labels.append(
                    SentenceLabels(stripped, offset, offset + len(stripped), _BLANK_VALUES, _NO_EVIDENCE)
                )
            continue
        sentence_evidence: dict[str, list[Evidence]] = {}
        for obs, value, s, e, cause in detail:
            ev = _evidence(text, obs, value, s, e, cause)
            if obs >= R.OTHER_INDEX:  # Other Finding / Any Abnormality: not a column
                other.append(ev)
            else:
                sentence_evidence.setdefault(ev.observation, []).append(ev)
                report_evidence.setdefault(ev.observation, []).append(ev)
        # a sentence that states something (a finding, even negated, or a normality: "the lungs are clear",
        # "no acute cardiopulmonary process") and nothing positive or uncertain is a "No Finding" sentence
        if _states_something(detail) and not _blocks_no_finding(sent_values, other_blocks):
            sent_values[NO_FINDING] = 1
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
    rules = rules or R.default_rules()
    values, sentences = _scan(text, rules, True)
    return _build_report(text, values, sentences, rules.other_blocks_no_finding)


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
        items = tqdm(texts, desc="labelling", unit="report")
    out = []
    for raw in items:
        text = coerce_text(raw)
        values, detail = _scan(text, rules, sentences)
        if sentences:
            out.append(_build_report(text, values, detail, rules.other_blocks_no_finding))
        else:
            out.append(ReportLabels(text, _values_dict(values), [], {}))
    return out
