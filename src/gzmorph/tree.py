"""The Galaxy Zoo 2 decision tree, as data.

One description serves every source: each answer has a Kaggle column name
(``Class1.1`` ... ``Class11.6``, 11 questions / 37 answers) and a GZ2 name
(``t01_smooth_or_features_a01_smooth`` ...), and says which question it leads
to.  Curation, the representation loss and the report all read it from here.

Vote-fraction conventions
-------------------------
* **conditional**: the fraction of the volunteers who *answered a question*
  that chose an answer (GZ2 ``*_fraction`` / ``*_weighted_fraction``); the
  answers of one question sum to 1 wherever anybody reached it.
* **cumulative**: the Kaggle challenge convention; a question's fractions are
  multiplied by the fraction of volunteers that reached it, so the answers of
  a question sum to that question's *reach*.  In the Kaggle files question 6
  ("anything odd?") is normalised as if everyone reached it: its reach is 1.

``to_cumulative`` and ``to_conditional`` convert between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Answer:
    kaggle: str  # "Class1.1"
    gz2: str  # "t01_smooth_or_features_a01_smooth"
    label: str  # "smooth"
    leads_to: int | None  # question number, None = end of the tree


@dataclass(frozen=True)
class Question:
    number: int
    gz2: str  # "t01_smooth_or_features"
    text: str
    answers: tuple[Answer, ...]
    root: bool = False  # reach is 1 by convention (Q1, and Q6 in Kaggle files)


@dataclass(frozen=True)
class DecisionTree:
    questions: tuple[Question, ...]
    _by_number: dict = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_number", {q.number: q for q in self.questions})

    def question(self, number: int) -> Question:
        return self._by_number[number]

    @property
    def answers(self) -> list[Answer]:
        return [a for q in self.questions for a in q.answers]

    @property
    def kaggle_columns(self) -> list[str]:
        return [a.kaggle for a in self.answers]

    @property
    def gz2_columns(self) -> list[str]:
        return [a.gz2 for a in self.answers]

    def question_of(self, kaggle_column: str) -> Question:
        for q in self.questions:
            if any(a.kaggle == kaggle_column for a in q.answers):
                return q
        raise KeyError(f"{kaggle_column!r} is not an answer of the decision tree")

    def parents(self, number: int) -> list[Answer]:
        """Answers that lead to question ``number``."""
        return [a for a in self.answers if a.leads_to == number]

    def topological_order(self) -> list[Question]:
        """Questions ordered so that every question comes after those leading to it."""
        order, done = [], set()
        pending = list(self.questions)
        while pending:
            progressed = False
            for q in list(pending):
                parents_q = {self.question_of(a.kaggle).number for a in self.parents(q.number)}
                if q.root or parents_q <= done:
                    order.append(q)
                    done.add(q.number)
                    pending.remove(q)
                    progressed = True
            if not progressed:  # pragma: no cover - the tree is static
                raise ValueError("decision tree has a cycle")
        return order

    # ------------------------------------------------------------------ votes
    def reach(self, cumulative: pd.DataFrame) -> pd.DataFrame:
        """Fraction of volunteers reaching each question, from cumulative fractions."""
        out = {}
        for q in self.questions:
            if q.root:
                out[q.number] = np.ones(len(cumulative))
            else:
                out[q.number] = sum(cumulative[a.kaggle].to_numpy(float) for a in self.parents(q.number))
        return pd.DataFrame(out, index=cumulative.index)

    def to_conditional(self, cumulative: pd.DataFrame) -> pd.DataFrame:
        """Kaggle cumulative columns -> conditional fractions (0 where nobody reached)."""
        reach = self.reach(cumulative)
        out = {}
        for q in self.questions:
            r = reach[q.number].to_numpy()
            for a in q.answers:
                v = cumulative[a.kaggle].to_numpy(float)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[a.kaggle] = np.where(r > 0, v / np.where(r > 0, r, 1), 0.0)
        return pd.DataFrame(out, index=cumulative.index)

    def to_cumulative(self, conditional: pd.DataFrame) -> pd.DataFrame:
        """Conditional fractions (Kaggle column names) -> Kaggle cumulative columns."""
        out: dict[str, np.ndarray] = {}
        reach: dict[int, np.ndarray] = {}
        for q in self.topological_order():
            if q.root:
                r = np.ones(len(conditional))
            else:
                r = sum(out[a.kaggle] for a in self.parents(q.number))
            reach[q.number] = r
            for a in q.answers:
                out[a.kaggle] = np.nan_to_num(conditional[a.kaggle].to_numpy(float)) * r
        return pd.DataFrame({c: out[c] for c in self.kaggle_columns}, index=conditional.index)

    def ideal_votes(self, answers: list[str]) -> dict[str, float]:
        """Cumulative fractions of a unanimous crowd that gave ``answers`` (Kaggle names).

        Used for synthetic galaxies: the true morphology written as the answers
        a perfect volunteer would give.  Every question on the path must be
        answered exactly once and the path must follow the tree.
        """
        given = {self.question_of(a).number: a for a in answers}
        if len(given) != len(answers):
            raise ValueError(f"two answers to one question in {answers}")
        votes = {c: 0.0 for c in self.kaggle_columns}
        for q in self.topological_order():
            if q.root:
                r = 1.0
            else:
                r = sum(votes[a.kaggle] for a in self.parents(q.number))
            if r > 0:
                if q.number not in given:
                    raise ValueError(f"path {answers} reaches question {q.number} but does not answer it")
                votes[given[q.number]] = r
            elif q.number in given:
                raise ValueError(f"path {answers} answers question {q.number}, which it never reaches")
        return votes

    def sum_violations(self, fractions: pd.DataFrame, tol: float = 1e-2,
                       conditional: bool = False) -> pd.DataFrame:
        """Rows where a question's answers do not add up (beyond ``tol``).

        Cumulative fractions must sum to the question's reach; conditional ones
        to 1, or to 0 where nobody answered the question.
        """
        reach = None if conditional else self.reach(fractions)
        rows = []
        for q in self.questions:
            total = sum(fractions[a.kaggle].to_numpy(float) for a in q.answers)
            if conditional:
                expected = np.where(np.abs(total) <= tol, 0.0, 1.0)
            else:
                expected = reach[q.number].to_numpy()
            bad = np.abs(total - expected) > tol
            for i in np.flatnonzero(bad):
                rows.append({"row": fractions.index[i], "question": q.number,
                             "sum": float(total[i]), "expected": float(expected[i])})
        return pd.DataFrame(rows, columns=["row", "question", "sum", "expected"])


def _q(number, gz2, text, answers, root=False):
    return Question(number, gz2, text,
                    tuple(Answer(f"Class{number}.{i + 1}", f"{gz2}_{a}", label, to)
                          for i, (a, label, to) in enumerate(answers)), root)


#: The Galaxy Zoo 2 tree in the layout of the Kaggle challenge (37 answers).
GZ2_TREE = DecisionTree((
    _q(1, "t01_smooth_or_features", "Is the galaxy simply smooth and rounded, with no sign of a disk?",
       [("a01_smooth", "smooth", 7), ("a02_features_or_disk", "features or disk", 2),
        ("a03_star_or_artifact", "star or artifact", None)], root=True),
    _q(2, "t02_edgeon", "Could this be a disk viewed edge-on?",
       [("a04_yes", "edge-on", 9), ("a05_no", "not edge-on", 3)]),
    _q(3, "t03_bar", "Is there a sign of a bar feature through the centre of the galaxy?",
       [("a06_bar", "bar", 4), ("a07_no_bar", "no bar", 4)]),
    _q(4, "t04_spiral", "Is there any sign of a spiral arm pattern?",
       [("a08_spiral", "spiral", 10), ("a09_no_spiral", "no spiral", 5)]),
    _q(5, "t05_bulge_prominence", "How prominent is the central bulge?",
       [("a10_no_bulge", "no bulge", 6), ("a11_just_noticeable", "just noticeable", 6),
        ("a12_obvious", "obvious", 6), ("a13_dominant", "dominant", 6)]),
    _q(6, "t06_odd", "Is there anything odd?",
       [("a14_yes", "odd", 8), ("a15_no", "not odd", None)], root=True),
    _q(7, "t07_rounded", "How rounded is it?",
       [("a16_completely_round", "completely round", 6), ("a17_in_between", "in between", 6),
        ("a18_cigar_shaped", "cigar-shaped", 6)]),
    _q(8, "t08_odd_feature", "Is the odd feature a ring, or is the galaxy disturbed or irregular?",
       [("a19_ring", "ring", None), ("a20_lens_or_arc", "lens or arc", None),
        ("a21_disturbed", "disturbed", None), ("a22_irregular", "irregular", None),
        ("a23_other", "other", None), ("a24_merger", "merger", None),
        ("a38_dust_lane", "dust lane", None)]),
    _q(9, "t09_bulge_shape", "Does the galaxy have a bulge at its centre? If so, what shape?",
       [("a25_rounded", "rounded bulge", 6), ("a26_boxy", "boxy bulge", 6), ("a27_no_bulge", "no bulge", 6)]),
    _q(10, "t10_arms_winding", "How tightly wound do the spiral arms appear?",
       [("a28_tight", "tight", 11), ("a29_medium", "medium", 11), ("a30_loose", "loose", 11)]),
    _q(11, "t11_arms_number", "How many spiral arms are there?",
       [("a31_1", "1 arm", 5), ("a32_2", "2 arms", 5), ("a33_3", "3 arms", 5), ("a34_4", "4 arms", 5),
        ("a36_more_than_4", "more than 4", 5), ("a37_cant_tell", "can't tell", 5)]),
))

KAGGLE_COLUMNS = GZ2_TREE.kaggle_columns


def resolve_answer(name: str, tree: DecisionTree = GZ2_TREE) -> Answer:
    """Find an answer by Kaggle name (``Class7.1``), GZ2 name
    (``t07_rounded_a16_completely_round``) or short GZ2 name (``t07_a16``)."""
    import re

    for a in tree.answers:
        if name in (a.kaggle, a.gz2):
            return a
    m = re.fullmatch(r"t(\d\d)_a(\d\d)", name)
    if m:
        for a in tree.answers:
            if a.gz2.startswith(f"t{m.group(1)}_") and f"_a{m.group(2)}_" in a.gz2:
                return a
    raise KeyError(f"{name!r} is not an answer of the Galaxy Zoo 2 tree "
                   "(use Kaggle names like Class7.1 or GZ2 names like t07_a16)")
