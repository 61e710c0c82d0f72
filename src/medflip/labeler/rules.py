"""Load the labeler's rule files and compile them into one regular expression.

Why one regex: the labeler must label hundreds of thousands of reports in seconds. Every phrase of every kind
(mentions, exclusions, attribute subjects and qualifiers, negation / uncertainty triggers, terminators) is put in
a character trie and emitted as a single nested alternation, so CPython's C regex engine finds all of them in one
left-to-right pass per report; Python code then only touches the handful of matches. The trie also makes the
longest phrase win at each position ("no evidence of" beats "no", "pericardial effusion" beats nothing and hides
"effusion").

Rule files live in `medflip/labeler/rules/`: `observations.yaml` (one block per observation) and `triggers.tsv`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import yaml

from medflip.errors import UserError
from medflip.observations import OBSERVATIONS

OTHER_FINDING = "Other Finding"
ANY_ABNORMALITY = "Any Abnormality"
#: Index space of the engine: the 14 observations, then two pseudo-observations that are not reported as columns.
#: Other Finding: a named abnormality outside the 14 (emphysema, granuloma, ...). Any Abnormality: an unnamed one
#: ("acute cardiopulmonary process", "abnormal chest"); negated or qualified normal ("no acute process", "the lungs
#: are clear", "normal chest radiograph") it is a statement of normality, which gives the sentence No Finding = 1.
ALL_OBSERVATIONS: tuple[str, ...] = (*OBSERVATIONS, OTHER_FINDING, ANY_ABNORMALITY)
OTHER_INDEX = len(OBSERVATIONS)
ABNORMALITY_INDEX = OTHER_INDEX + 1

MENTION, EXCLUSION, SUBJECT, QUALIFIER = "mention", "exclusion", "subject", "qualifier"
NEG_PRE, NEG_POST, NEG_BOTH = "negation_pre", "negation_post", "negation_both"
UNC_PRE, UNC_POST, UNC_BOTH = "uncertainty_pre", "uncertainty_post", "uncertainty_both"
HYPO_PRE, PSEUDO, TERMINATE = "hypothetical_pre", "pseudo", "terminate"
TRIGGER_KINDS = (NEG_PRE, NEG_POST, NEG_BOTH, UNC_PRE, UNC_POST, UNC_BOTH, HYPO_PRE, PSEUDO, TERMINATE)
#: Which triggers reach forward / backward, and the value they give a mention in their scope.
FORWARD = frozenset({NEG_PRE, NEG_BOTH, UNC_PRE, UNC_BOTH, HYPO_PRE})
BACKWARD = frozenset({NEG_POST, NEG_BOTH, UNC_POST, UNC_BOTH})
TRIGGER_VALUE: dict[str, int | None] = {
    NEG_PRE: 0,
    NEG_POST: 0,
    NEG_BOTH: 0,
    UNC_PRE: -1,
    UNC_POST: -1,
    UNC_BOTH: -1,
    HYPO_PRE: None,
}
QUALIFIER_VALUES = {"abnormal": 1, "borderline": -1, "normal": 0}

_PHRASE_OK = re.compile(r"^[a-z0-9]+\*?(?: [a-z0-9]+\*?)*$")


class Role(NamedTuple):
    """What a matched phrase means. `target` is an observation index (mentions / exclusions), an attribute
    group index (subjects), or -1 (triggers, qualifiers)."""

    kind: str
    target: int
    phrase: str


@dataclass(frozen=True)
class AttributeGroup:
    """Neutral subjects of one observation plus the qualifier words that give them a value."""

    observation: int
    qualifier_values: dict[str, int]  # qualifier phrase -> 1 / -1 / 0


@dataclass
class CompiledRules:
    """Everything the engine needs: the scanning regex and the phrase -> roles tables."""

    pattern: re.Pattern[str]
    exact: dict[str, tuple[Role, ...]]
    wildcard: list[tuple[re.Pattern[str], tuple[Role, ...]]]
    groups: list[AttributeGroup]
    trigger_value: dict[str, int | None] = field(default_factory=lambda: dict(TRIGGER_VALUE))
    other_blocks_no_finding: bool = True  # an Other Finding (emphysema, granuloma...) blocks No Finding
    #: qualifier phrase -> ((attribute group index, value), ...): which subjects a qualifier can qualify
    qualifier_groups: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    _memo: dict[str, tuple[Role, ...]] = field(default_factory=dict)

    def roles(self, matched: str) -> tuple[Role, ...]:
        """Roles of a matched phrase (memoised: the same few hundred strings recur in every report)."""
        found = self._memo.get(matched)
        if found is not None:
            return found
        key = " ".join(matched.split())
        found = self.exact.get(key)
        if found is None:
            found = ()
            for regex, roles in self.wildcard:
                if regex.fullmatch(key):
                    found = roles
                    break
        if len(self._memo) < 200_000:
            self._memo[matched] = found
        return found


def rules_dir() -> Path:
    return Path(str(resources.files("medflip.labeler") / "rules"))


def _check_phrase(phrase: object, where: str) -> str:
    if not isinstance(phrase, str):
        raise UserError(f"{where}: phrase must be a string, got {phrase!r}")
    text = " ".join(phrase.lower().split())
    if not _PHRASE_OK.match(text):
        raise UserError(f"{where}: bad phrase {phrase!r} (lower-case words of a-z 0-9, optional trailing *)")
    return text


def load_trigger_table(path: Path) -> list[tuple[str, str]]:
    """(phrase, kind) rows of triggers.tsv; '#' starts a comment line."""
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) < 2 or cells[1].strip() not in TRIGGER_KINDS:
            raise UserError(f"{path}:{lineno}: expected 'phrase<TAB>kind' with kind in {TRIGGER_KINDS}")
        kind = TRIGGER_KINDS[
            TRIGGER_KINDS.index(cells[1].strip())
        ]  # the constant itself: the engine uses `is`
        rows.append((_check_phrase(cells[0], f"{path}:{lineno}"), kind))
    return rows


CONVENTIONS = ("chexpert", "iu")
_CONVENTION_KEYS = {"other_finding_blocks_no_finding", "triggers", "mentions", "levels"}


@dataclass(frozen=True)
class Convention:
    """How one labelling convention reads words the conventions disagree on (rules/conventions.yaml)."""

    name: str
    other_finding_blocks_no_finding: bool = False
    triggers: dict[str, str] = field(default_factory=dict)  # phrase -> trigger kind (replaces triggers.tsv)
    mentions: dict[str, list[str]] = field(default_factory=dict)  # observation -> phrases it owns here
    levels: dict[str, dict[str, int]] = field(default_factory=dict)  # observation -> {level: value}


def load_convention(path: Path, name: str) -> Convention:
    """One block of conventions.yaml, validated."""
    if name not in CONVENTIONS:
        raise UserError(f"convention must be one of {CONVENTIONS}, got {name!r}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    block = data.get(name) or {}
    unknown = set(block) - _CONVENTION_KEYS
    if unknown:
        raise UserError(
            f"{path}:{name}: unknown key(s) {sorted(unknown)}; expected {sorted(_CONVENTION_KEYS)}"
        )
    triggers = {}
    for phrase, kind in (block.get("triggers") or {}).items():
        if kind not in TRIGGER_KINDS:
            raise UserError(f"{path}:{name}: trigger {phrase!r}: kind {kind!r} not in {TRIGGER_KINDS}")
        triggers[_check_phrase(phrase, f"{path}:{name}")] = TRIGGER_KINDS[TRIGGER_KINDS.index(kind)]
    mentions = {}
    for obs, phrases in (block.get("mentions") or {}).items():
        if obs not in ALL_OBSERVATIONS:
            raise UserError(f"{path}:{name}: unknown observation {obs!r}")
        mentions[obs] = [_check_phrase(p, f"{path}:{name}:{obs}") for p in phrases or []]
    levels = {}
    for obs, mapping in (block.get("levels") or {}).items():
        if obs not in ALL_OBSERVATIONS or not set(mapping or {}) <= set(QUALIFIER_VALUES):
            raise UserError(f"{path}:{name}: levels must map an observation to {{level: value}}, got {obs!r}")
        levels[obs] = {level: int(v) for level, v in mapping.items()}
    return Convention(
        name, bool(block.get("other_finding_blocks_no_finding", False)), triggers, mentions, levels
    )


def load_observation_rules(
    path: Path, convention: Convention | None = None
) -> tuple[list[Role], list[AttributeGroup]]:
    """Mention / exclusion / subject / qualifier roles from observations.yaml (as read by `convention`)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(data) - set(ALL_OBSERVATIONS)
    if unknown:
        raise UserError(
            f"{path}: unknown observation(s) {sorted(unknown)}; names must be the 14 CheXpert observations of medflip.observations.OBSERVATIONS"
        )
    roles: list[Role] = []
    groups: list[AttributeGroup] = []
    convention = convention or Convention("chexpert")
    owned = {p: ALL_OBSERVATIONS.index(obs) for obs, phrases in convention.mentions.items() for p in phrases}
    for name, block in data.items():
        index = ALL_OBSERVATIONS.index(name)
        block = block or {}
        level_values = {**QUALIFIER_VALUES, **convention.levels.get(name, {})}
        for phrase in block.get("mentions") or []:
            phrase = _check_phrase(phrase, f"{path}:{name}")
            if owned.get(phrase, index) == index:  # a convention may give the phrase to another observation
                roles.append(Role(MENTION, index, phrase))
        for phrase in block.get("exclusions") or []:
            roles.append(Role(EXCLUSION, index, _check_phrase(phrase, f"{path}:{name}")))
        for attribute in block.get("attributes") or []:
            values: dict[str, int] = {}
            for level, value in level_values.items():
                for phrase in attribute.get(level) or []:
                    word = _check_phrase(phrase, f"{path}:{name}:{level}")
                    values[word] = value
                    roles.append(Role(QUALIFIER, -1, word))
            group_index = len(groups)
            groups.append(AttributeGroup(index, values))
            for phrase in attribute.get("subjects") or []:
                roles.append(Role(SUBJECT, group_index, _check_phrase(phrase, f"{path}:{name}:subjects")))
    for phrase, index in owned.items():
        role = Role(MENTION, index, phrase)
        if role not in roles:
            roles.append(role)
    return roles, groups


def _trie_regex(phrases: list[str]) -> str:
    """Nested alternation over `phrases`; at each node longer continuations are tried first."""
    trie: dict = {}
    for phrase in phrases:
        node = trie
        for unit in re.findall(r"[a-z0-9]|\*| ", phrase):
            node = node.setdefault(unit, {})
        node[""] = True

    def emit(node: dict) -> str:
        terminal = "" in node
        units = sorted((u for u in node if u), key=lambda u: (u == "*", u == " ", u))
        alternatives = []
        for unit in units:
            token = {"*": "[a-z0-9]*", " ": r"\s+"}.get(unit, unit)
            alternatives.append(token + emit(node[unit]))
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        if terminal:
            return "(?:" + body + ")?"
        return body

    return emit(trie)


def compile_rules(
    directory: Path | None = None, hypothetical: str = "ignore", convention: str = "chexpert"
) -> CompiledRules:
    """Read and validate the rule files, then build the scanning regex and lookup tables.

    convention: "chexpert" (default: the CheXpert labeler's reading, as in MIMIC-CXR's and CheXpert's labels)
    or "iu" (the IU radiologists' MeSH coding); rules/conventions.yaml and docs/labeler.md list the differences.
    hypothetical: what a question / past mention ("evaluate for pneumonia", "history of pneumonia") gives:
    "ignore" (default: no label) or "uncertain" (-1).
    """
    if hypothetical not in ("ignore", "uncertain"):
        raise UserError(f"hypothetical must be 'ignore' or 'uncertain', got {hypothetical!r}")
    directory = Path(directory) if directory is not None else rules_dir()
    conv_path = directory / "conventions.yaml"
    conv = load_convention(conv_path, convention) if conv_path.exists() else Convention(convention)
    roles, groups = load_observation_rules(directory / "observations.yaml", conv)
    table = load_trigger_table(directory / "triggers.tsv")
    listed = {phrase for phrase, _ in table}
    table = [(phrase, conv.triggers.get(phrase, kind)) for phrase, kind in table]
    table += [(phrase, kind) for phrase, kind in conv.triggers.items() if phrase not in listed]
    roles += [Role(kind, -1, phrase) for phrase, kind in table]
    by_phrase: dict[str, list[Role]] = {}
    for role in roles:
        bucket = by_phrase.setdefault(role.phrase, [])
        if role not in bucket:
            bucket.append(role)
    for phrase, bucket in by_phrase.items():
        trigger_kinds = {r.kind for r in bucket if r.kind in TRIGGER_KINDS}
        if len(trigger_kinds) > 1 or (trigger_kinds and len(bucket) > 1):
            raise UserError(f"rules: phrase {phrase!r} has conflicting roles {[r.kind for r in bucket]}")
    exact = {p: tuple(b) for p, b in by_phrase.items() if "*" not in p}
    wildcard = [
        (re.compile(re.escape(p).replace(r"\*", "[a-z0-9]*").replace(r"\ ", " ")), tuple(b))
        for p, b in sorted(by_phrase.items(), key=lambda item: -len(item[0]))
        if "*" in p
    ]
    trie = _trie_regex(sorted(by_phrase))
    # sentence breaks and rule phrases; commas and semicolons are found per sentence by the engine
    pattern = re.compile(r"(?P<brk>[.!?]+(?=\s|$)|\n[ \t]*\n)|\b(?P<ph>" + trie + r")\b")
    trigger_value = dict(TRIGGER_VALUE)
    if hypothetical == "uncertain":
        trigger_value[HYPO_PRE] = -1
    qualifier_groups: dict[str, list[tuple[int, int]]] = {}
    for g, group in enumerate(groups):
        for word, value in group.qualifier_values.items():
            qualifier_groups.setdefault(word, []).append((g, value))
    return CompiledRules(
        pattern=pattern,
        exact=exact,
        wildcard=wildcard,
        groups=groups,
        trigger_value=trigger_value,
        other_blocks_no_finding=conv.other_finding_blocks_no_finding,
        qualifier_groups={k: tuple(v) for k, v in qualifier_groups.items()},
    )


@lru_cache(maxsize=4)
def default_rules(hypothetical: str = "ignore", convention: str = "chexpert") -> CompiledRules:
    """The packaged rules, compiled once per process."""
    return compile_rules(hypothetical=hypothetical, convention=convention)
