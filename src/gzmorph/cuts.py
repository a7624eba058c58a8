"""Confidence-threshold cuts: from vote fractions to labelled, high-confidence classes.

Three kinds, all written as data (named cuts below, user cuts in ``config.yaml``):

``threshold``
    Per class, a list of conditions ``"<answer> <op> <value>"`` on the Kaggle
    *cumulative* fractions (``Class7.1 > 0.5``; write ``cond(t07_a16) > 0.5``
    for the conditional fraction).  A galaxy meeting every condition of exactly
    one class gets that label; one that meets several is *ambiguous* and left
    out (counted).  Confidence: the class's ``confidence`` expression, by
    default the smallest fraction its ``>`` conditions test.

``path_product``
    Per class, a product of *conditional* fractions along its decision-tree
    path, ``"t01_a02 * t02_a04 * (t09_a25 + t09_a26)"``.  The label is the
    argmax over classes (galaxies whose best confidence is 0 get none); the
    ``top_k`` most confident of each class are kept.

``label``
    Classes from a label column of the source (a table source's ``label_columns``, or the folder
    layout's ``class``): ``column`` names it; ``classes`` (optional) maps each class to the
    column's value or values that make it (``edge-on: [edge-on, edgeon]``), so that sources
    naming classes differently agree; galaxies with another value are left out.  Without
    ``classes`` every value is a class (sorted).  Confidence is 1: a label is certain.

Answers may be named the Kaggle way (``Class1.2``), the GZ2 way
(``t01_smooth_or_features_a02_features_or_disk``) or short (``t01_a02``).
"""

from __future__ import annotations

import operator
import re
import unicodedata
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .io import InputError
from .tree import GZ2_TREE, KAGGLE_COLUMNS, resolve_answer

KINDS = ("threshold", "path_product", "label")

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_COND = re.compile(r"^\s*(cond\(\s*)?([A-Za-z0-9_.]+)\s*(\))?\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Term:
    """One answer's fraction, cumulative (Kaggle convention) or conditional."""
    column: str  # Kaggle name
    conditional: bool

    def values(self, cumulative: pd.DataFrame, conditional: pd.DataFrame) -> np.ndarray:
        return (conditional if self.conditional else cumulative)[self.column].to_numpy(float)


@dataclass(frozen=True)
class Condition:
    term: Term
    op: str
    value: float
    text: str


@dataclass(frozen=True)
class Product:
    """A product of factors, each factor a sum of terms."""
    factors: tuple[tuple[Term, ...], ...]
    text: str

    def values(self, cumulative, conditional) -> np.ndarray:
        out = np.ones(len(cumulative))
        for factor in self.factors:
            out = out * sum(t.values(cumulative, conditional) for t in factor)
        return out


@dataclass(frozen=True)
class ClassRule:
    name: str
    conditions: tuple[Condition, ...] = ()
    confidence: Product | None = None
    values: tuple[str, ...] = ()  # label cuts: the column's values that make this class


def source_column(table: pd.DataFrame, name: str) -> str:
    """The column of a source table holding the catalogue's column ``name``: a table source renames
    its catalogue's columns named like the standard table's (``label``, ``split``, ``source`` ...) to
    ``catalogue_<name>`` (gzmorph.sources.table), and a config still names them as written."""
    from .sources.table import catalogue_column

    renamed = catalogue_column(name)
    return renamed if renamed in table.columns else name


def _label_text(v) -> str:
    """A label cell (or a config value) as the text classes are matched by, in Unicode's composed
    form (NFC): macOS lists a folder named 'é' decomposed, while YAML and most catalogues compose it."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    return unicodedata.normalize("NFC", str(v.item() if isinstance(v, np.generic) else v).strip())


@dataclass(frozen=True)
class Cut:
    name: str
    kind: str  # "threshold" | "path_product" | "label"
    classes: tuple[ClassRule, ...]
    top_k: int | None = None
    description: str = ""
    rules_text: dict = field(default_factory=dict)
    column: str | None = None  # label cuts: the source's label column

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def needs_votes(self) -> bool:
        return self.kind != "label"

    def _label_values(self, table: pd.DataFrame, where: str) -> pd.Series:
        column = source_column(table, self.column)
        if column not in table.columns:
            raise InputError(f"{where}: cut {self.name!r} takes its classes from the column {self.column!r}, "
                             f"which this source does not have (columns: {', '.join(map(str, table.columns[:12]))}"
                             f"{' ...' if len(table.columns) > 12 else ''})")
        col = table[column]
        empty = col.isna() | (col.astype(str).str.strip() == "")
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            ident = table["id"].iloc[i] if "id" in table.columns else table.index[i]
            raise InputError(f"{where}: row {i} (id {ident!r}), column {self.column!r}: empty label "
                             f"({int(empty.sum())} empty cell(s)); cut {self.name!r} needs every galaxy's label")
        return col.map(_label_text)

    def resolve(self, table: pd.DataFrame, where: str = "source catalogue") -> Cut:
        """This cut with its classes known: a label cut without ``classes`` takes every value of its
        column (sorted); any other cut is returned as it is."""
        if self.kind != "label" or self.classes:
            return self
        values = sorted(self._label_values(table, where).unique())
        rules = tuple(ClassRule(v, values=(v,)) for v in values)
        return replace(self, classes=rules, rules_text={v: f"{self.column} == {v!r}" for v in values})

    def assign_table(self, table: pd.DataFrame, where: str = "source catalogue") -> pd.DataFrame:
        """:meth:`assign` on a source table: the vote columns, or the label column of a label cut."""
        if self.kind == "label":
            cut = self.resolve(table, where)
            values = cut._label_values(table, where)
            pos = {v: k for k, rule in enumerate(cut.classes) for v in rule.values}
            label = values.map(lambda v: pos.get(v, -1)).to_numpy(np.int64)
            absent = [rule for k, rule in enumerate(cut.classes) if not (label == k).any()]
            if absent:  # a value misspelt in the mapping, or a class this source does not have
                held = sorted(values.unique())
                raise InputError(
                    f"{where}: cut {self.name!r}: no galaxy has class {absent[0].name!r} (column {self.column!r} "
                    f"== {' or '.join(map(repr, absent[0].values))}); the column holds "
                    f"{', '.join(map(repr, held[:12]))}{' ...' if len(held) > 12 else ''}"
                    + (f" ({len(absent)} such classes: {[r.name for r in absent]})" if len(absent) > 1 else "")
                    + "; correct the value in the cut's classes, or leave the class out")
            return pd.DataFrame({"label": label, "confidence": np.where(label >= 0, 1.0, np.nan),
                                 "ambiguous": np.zeros(len(table), dtype=bool)}, index=table.index)
        missing = [c for c in KAGGLE_COLUMNS if c not in table.columns]
        if missing:
            raise InputError(f"{where}: cut {self.name!r} ({self.kind}) reads vote fractions, and this source has "
                             f"none ({missing[0]} ... absent): declare its vote columns (table.votes) or use a "
                             "label cut (kind: label)")
        return self.assign(table[KAGGLE_COLUMNS])

    def assign(self, cumulative: pd.DataFrame) -> pd.DataFrame:
        """Label every galaxy: columns ``label`` (-1 = none), ``confidence``, ``ambiguous``."""
        conditional = GZ2_TREE.to_conditional(cumulative)
        n = len(cumulative)
        conf = np.zeros((n, len(self.classes)))
        if self.kind == "threshold":
            match = np.zeros((n, len(self.classes)), dtype=bool)
            for k, rule in enumerate(self.classes):
                ok = np.ones(n, dtype=bool)
                for c in rule.conditions:
                    ok &= _OPS[c.op](c.term.values(cumulative, conditional), c.value)
                match[:, k] = ok
                conf[:, k] = rule.confidence.values(cumulative, conditional)
            n_match = match.sum(axis=1)
            label = np.where(n_match == 1, match.argmax(axis=1), -1)
            ambiguous = n_match > 1
        else:
            for k, rule in enumerate(self.classes):
                conf[:, k] = rule.confidence.values(cumulative, conditional)
            best = conf.max(axis=1)
            label = np.where(best > 0, conf.argmax(axis=1), -1)
            ambiguous = np.zeros(n, dtype=bool)
        confidence = np.where(label >= 0, conf[np.arange(n), np.maximum(label, 0)], np.nan)
        return pd.DataFrame({"label": label, "confidence": confidence, "ambiguous": ambiguous},
                            index=cumulative.index)


# ----------------------------------------------------------------- parsing
def _term(name: str, conditional: bool, where: str) -> Term:
    try:
        return Term(resolve_answer(name).kaggle, conditional)
    except KeyError as err:
        raise InputError(f"{where}: {err.args[0]}") from None


def parse_condition(text: str, where: str) -> Condition:
    m = _COND.match(str(text))
    if not m or bool(m.group(1)) != bool(m.group(3)):
        raise InputError(f"{where}: cannot read condition {text!r}; write e.g. 'Class7.1 > 0.5' "
                         "or 'cond(t07_a16) >= 0.8'")
    try:
        value = float(m.group(5))
    except ValueError:
        raise InputError(f"{where}: cannot read condition {text!r}: {m.group(5)!r} is not a number") from None
    return Condition(_term(m.group(2), bool(m.group(1)), where), m.group(4), value, str(text))


def parse_product(text: str, where: str, conditional: bool) -> Product:
    """``a * (b + c) * d`` over answer names."""
    factors = []
    for raw in str(text).split("*"):
        raw = raw.strip()
        if raw.startswith("(") and raw.endswith(")"):
            raw = raw[1:-1]
        names = [s.strip() for s in raw.split("+")]
        if not raw or not all(names) or any(c in raw for c in "()"):
            raise InputError(f"{where}: cannot read expression {text!r}; write e.g. "
                             "'t01_a02 * t02_a04 * (t09_a25 + t09_a26)'")
        factors.append(tuple(_term(n, conditional, where) for n in names))
    return Product(tuple(factors), str(text))


def label_cut_from_config(name: str, spec: dict, where: str) -> Cut:
    column = spec.get("column")
    if not isinstance(column, str) or not column:
        raise InputError(f"{where}.column: a label cut needs the label column its classes come from")
    classes = spec.get("classes")
    rules, text, owner = [], {}, {}
    if classes is not None:
        if not isinstance(classes, dict) or len(classes) < 2:
            raise InputError(f"{where}.classes: give at least two classes as a mapping class -> value(s)")
        for cname, values in classes.items():
            w = f"{where}.classes.{cname}"
            values = values if isinstance(values, list) else [values]
            if not values or any(v is None or isinstance(v, (dict, list, bool)) or _label_text(v) == ""
                                 for v in values):
                raise InputError(f"{w}: {values!r}: give the value (or list of values) of column {column!r} "
                                 "that makes this class")
            texts = tuple(_label_text(v) for v in values)
            for t in texts:
                if t in owner and owner[t] != str(cname):
                    raise InputError(f"{w}: the value {t!r} already makes the class {owner[t]!r}")
                owner[t] = str(cname)
            rules.append(ClassRule(str(cname), values=texts))
            text[str(cname)] = (f"{column} == {texts[0]!r}" if len(texts) == 1
                                else f"{column} in [{', '.join(map(repr, texts))}]")
    top_k = spec.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise InputError(f"{where}.top_k: {top_k!r} is not a positive integer")
    desc = spec.get("description") or f"classes from the label column {column!r}"
    return Cut(name, "label", tuple(rules), top_k, desc, text, column)


def cut_from_config(name: str, spec: dict) -> Cut:
    where = f"config cuts.{name}"
    if not isinstance(spec, dict):
        raise InputError(f"{where}: needs 'classes' (a mapping class name -> rule)")
    kind = spec.get("kind", "threshold")
    if kind not in KINDS:
        raise InputError(f"{where}.kind: {kind!r} is not one of {', '.join(map(repr, KINDS))}")
    if kind == "label":
        return label_cut_from_config(name, spec, where)
    if "column" in spec:
        raise InputError(f"{where}.column: only label cuts (kind: label) read a column")
    if "classes" not in spec:
        raise InputError(f"{where}: needs 'classes' (a mapping class name -> rule)")
    classes_spec = spec["classes"]
    if not isinstance(classes_spec, dict) or len(classes_spec) < 2:
        raise InputError(f"{where}.classes: give at least two classes as a mapping")
    rules, text = [], {}
    for cname, rule in classes_spec.items():
        w = f"{where}.classes.{cname}"
        if kind == "threshold":
            if isinstance(rule, (list, str)):
                rule = {"conditions": rule}
            if not isinstance(rule, dict):
                raise InputError(f"{w}: {rule!r} is not a list of conditions; write e.g. ['Class7.1 > 0.5']")
            conds = rule.get("conditions")
            conds = [conds] if isinstance(conds, str) else conds
            if not conds:
                raise InputError(f"{w}: a threshold class needs at least one condition")
            parsed = tuple(parse_condition(c, w) for c in conds)
            if rule.get("confidence"):
                confidence = parse_product(rule["confidence"], w, conditional=False)
            else:
                lower = [c.term for c in parsed if c.op in (">", ">=")]
                if not lower:
                    raise InputError(f"{w}: no '>' condition to take a confidence from; "
                                     "give 'confidence: <expression>'")
                confidence = _MinOf(tuple(lower))
            rules.append(ClassRule(str(cname), parsed, confidence))
            text[str(cname)] = " and ".join(c.text for c in parsed)
        else:
            expr = rule.get("confidence") if isinstance(rule, dict) else rule
            rules.append(ClassRule(str(cname), (), parse_product(expr, w, conditional=True)))
            text[str(cname)] = str(expr)
    top_k = spec.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise InputError(f"{where}.top_k: {top_k!r} is not a positive integer")
    return Cut(name, kind, tuple(rules), top_k, spec.get("description", ""), text)


@dataclass(frozen=True)
class _MinOf:
    terms: tuple[Term, ...]

    def values(self, cumulative, conditional) -> np.ndarray:
        return np.min([t.values(cumulative, conditional) for t in self.terms], axis=0)


# ---------------------------------------------------------------- named cuts
NAMED_CUTS = {
    "hiwl5": {
        "kind": "threshold",
        "description": "Zhu et al. (2019) / HIWL (Ma et al. 2023) 5-class cut on Kaggle "
                       "cumulative fractions, strict >",
        "classes": {
            "round": ["Class1.1 > 0.469", "Class7.1 > 0.50"],
            "in-between": ["Class1.1 > 0.469", "Class7.2 > 0.50"],
            "cigar": ["Class1.1 > 0.469", "Class7.3 > 0.50"],
            "edge-on": ["Class1.2 > 0.430", "Class2.1 > 0.602"],
            "spiral": ["Class1.2 > 0.430", "Class2.2 > 0.715", "Class4.1 > 0.619"],
        },
    },
    "guan9": {
        "kind": "path_product",
        "description": "Guan et al. (2023) 9-class GZoo2 cut: product of conditional vote "
                       "fractions along the class's path, argmax, the k most confident per class",
        "top_k": 600,
        "classes": {
            "round": "t01_a01 * t07_a16",
            "in-between": "t01_a01 * t07_a17",
            "cigar": "t01_a01 * t07_a18",
            "edge-on with bulge": "t01_a02 * t02_a04 * (t09_a25 + t09_a26)",
            "edge-on no bulge": "t01_a02 * t02_a04 * t09_a27",
            "barred spiral": "t01_a02 * t02_a05 * t03_a06 * t04_a08",
            "barred no spiral": "t01_a02 * t02_a05 * t03_a06 * t04_a09",
            "unbarred spiral": "t01_a02 * t02_a05 * t03_a07 * t04_a08",
            "unbarred no spiral": "t01_a02 * t02_a05 * t03_a07 * t04_a09",
        },
    },
}


def get_cut(name: str, user_cuts: dict | None = None) -> Cut:
    """A named cut, or a user cut defined under ``cuts:`` in the config."""
    user_cuts = user_cuts or {}
    if name in user_cuts:
        return cut_from_config(name, user_cuts[name])
    if name in NAMED_CUTS:
        return cut_from_config(name, NAMED_CUTS[name])
    known = sorted(set(NAMED_CUTS) | set(user_cuts))
    raise InputError(f"config cut: {name!r} is not a named cut nor defined under 'cuts:' "
                     f"(known: {', '.join(known)})")
