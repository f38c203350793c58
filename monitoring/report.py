"""Drift of a batch of request features against a reference, with Evidently.

`detect` gives the verdict with Evidently's drift methods called directly: a classifier telling batch from reference
on each embedding (the base's image and question embeddings; out-of-fold ROC AUC above `drift.embedding_threshold`
means drift; an Evidently DriftMethod defined here, because Evidently's own SGD-on-a-half-split is too noisy for
batches of 50), Evidently's default per-column tests on the statistics (Kolmogorov-Smirnov for numbers, Z or
chi-squared for categories; p < `drift.stat_threshold`) and its domain classifier on the question text. Called
directly it takes about a second, so a benchmark can judge hundreds of batches; `write_report` runs the same methods
as Evidently's Report and saves its HTML (for a person) and values (in the JSON)."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mllmcl.config import DriftConfig
from monitoring.features import BASE, CATEGORICAL, EMBEDDINGS, SIGNALS, STATS, TEXT, embedding_columns

TEXT_METHOD = "abs_text_content_drift"  # domain classifier's ROC AUC against a threshold (no 1000-fold bootstrap)
FOLDS = 5


def classifier_drift_method(threshold: float):
    """Evidently's embedding drift method for this monitor (an Evidently DriftMethod, so the Report renders it)."""
    return _method_class()(threshold=threshold)


_METHOD = None


def _method_class():
    """Defined on first use: Evidently is a heavy import."""
    global _METHOD
    if _METHOD is None:
        from evidently.legacy.metrics.data_drift.embedding_drift_methods import DriftMethod
        from evidently.pydantic_utils import autoregister

        @autoregister
        class CrossValidatedClassifierDrift(DriftMethod):
            """Evidently's "model" embedding drift, made reliable for small batches: a standardised, L2-regularised
            logistic regression tells batch from reference, its ROC AUC is computed out of fold (5-fold, every row
            scored once) instead of on one half split, and classes are balanced. AUC above `threshold` = drift.
            (Evidently's own SGD on a half split gave in-distribution AUCs from 0.40 to 0.65 on 50 requests.)"""

            class Config:
                type_alias = "mllmcl:drift_method:CrossValidatedClassifierDrift"

            threshold: float = 0.65

            def __call__(self, current_emb, reference_emb):
                import numpy as np
                from sklearn.linear_model import LogisticRegression
                from sklearn.metrics import roc_auc_score
                from sklearn.model_selection import StratifiedKFold, cross_val_predict
                from sklearn.pipeline import make_pipeline
                from sklearn.preprocessing import StandardScaler

                x = np.vstack([np.asarray(reference_emb, float), np.asarray(current_emb, float)])
                y = np.r_[np.zeros(len(reference_emb)), np.ones(len(current_emb))]
                folds = min(FOLDS, len(current_emb), len(reference_emb))
                if folds < 2:
                    return 0.5, False, "cross-validated classifier"
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=500))
                cv = StratifiedKFold(folds, shuffle=True, random_state=0)
                proba = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
                auc = float(roc_auc_score(y, proba))
                return auc, auc > self.threshold, "cross-validated classifier"

        _METHOD = CrossValidatedClassifierDrift
    return _METHOD


@dataclass
class DriftResult:
    """The verdict on one batch: drifted or not, why (embeddings, columns), and how the router saw it."""

    detected: bool
    drift_share: float  # share of compared columns (statistics, router signals, question text) that drifted
    threshold: float  # drift_share at which the columns alone make the batch drifted
    drifted_columns: list[str]
    strong_columns: list[str]  # columns with p < drift.strong_p_value: each drifts the batch on its own
    scores: dict[str, float]  # per column: p-value (statistics, categories) or ROC AUC (question text)
    embeddings: dict[str, dict]  # name -> {"score": ROC AUC, "drifted": bool}
    reference_rows: int
    current_rows: int
    unknown_share: float  # requests flagged unknown (router unsure, novel image) or image requests sent to the base
    base_share: float  # requests answered by the plain base
    routed: dict[str, int] = field(default_factory=dict)  # requests per expert ("base" included)
    assigned: dict[str, int] = field(default_factory=dict)  # requests per reference task they were compared with

    @property
    def drifted_embeddings(self) -> list[str]:
        """The embeddings whose classifier told the batch from the reference."""
        return [name for name, e in self.embeddings.items() if e["drifted"]]

    def to_json(self) -> dict:
        """Plain data for the report JSON."""
        return {**asdict(self), "drifted_embeddings": self.drifted_embeddings}

    def summary(self) -> str:
        """One line: what drifted and how the router saw the batch."""
        emb = ", ".join(f"{n} {e['score']:.2f}" for n, e in self.embeddings.items()) or "none"
        return (
            f"{'DRIFT' if self.detected else 'no drift'}: embeddings AUC {emb}; "
            f"{self.drift_share:.0%} of columns drifted ({', '.join(self.drifted_columns) or 'none'}); "
            f"{self.unknown_share:.0%} unknown, {self.base_share:.0%} to base; {self.current_rows} requests"
        )


def compared_columns(reference, current) -> tuple[list[str], list[str], list[str]]:
    """(numerical, categorical, text) columns worth comparing: present with values on both sides and not one constant
    shared by both (a fixed image size carries no signal)."""

    def useful(c):
        if c not in reference or c not in current:
            return False
        a, b = reference[c].dropna(), current[c].dropna()
        return len(a) > 1 and len(b) > 1 and len(set(a.unique()) | set(b.unique())) > 1

    return (
        [c for c in STATS + SIGNALS if useful(c)],
        [c for c in CATEGORICAL if useful(c)],
        [TEXT] if useful(TEXT) else [],
    )


def unknown(current):
    """Per request: flagged unknown by the open set, or an image request sent to the base (a text-only request going to
    the base is the router doing its job, not something new)."""
    return (current["known"] == "no") | ((current["expert"] == BASE) & (current["has_image"] == "yes"))


def routing(current) -> dict:
    """How the router saw the batch: unknown share, base share, requests per expert."""
    n = max(1, len(current))
    return {
        "unknown_share": round(float(unknown(current).sum()) / n, 4),
        "base_share": round(float((current["expert"] == BASE).sum()) / n, 4),
        "routed": {str(k): int(v) for k, v in current["expert"].value_counts().items()},
    }


def detect(reference, current, cfg: DriftConfig | None = None) -> DriftResult:
    """The verdict: drifted when an embedding drifted, when `drift_share` of the compared columns did, or when one
    column is beyond doubt (p < `strong_p_value`)."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType
    from sklearn.exceptions import ConvergenceWarning

    cfg = cfg or DriftConfig()
    numerical, categorical, text = compared_columns(reference, current)
    scores, drifted = {}, []
    for columns, kind, method, threshold in (
        (numerical, ColumnType.Numerical, None, cfg.stat_threshold),
        (categorical, ColumnType.Categorical, None, cfg.stat_threshold),
        (text, ColumnType.Text, TEXT_METHOD, cfg.embedding_threshold),
    ):
        for c in columns:
            ref, cur = reference[c].dropna(), current[c].dropna()
            test = get_stattest(ref, cur, kind, method)
            with warnings.catch_warnings():  # chi-squared on a category absent from the reference divides by zero;
                warnings.simplefilter("ignore", RuntimeWarning)  # the text classifier (50 iterations) may not converge
                warnings.simplefilter("ignore", ConvergenceWarning)
                result = test(ref, cur, kind, threshold)
            scores[c] = round(float(result.drift_score), 6)
            if result.drifted:
                drifted.append(c)
    embeddings = {}
    for name in EMBEDDINGS:
        cols = embedding_columns(reference, name)
        if not cols or not set(cols) <= set(current.columns):
            continue
        score, is_drift, _ = classifier_drift_method(cfg.embedding_threshold)(
            current[cols].copy().reset_index(drop=True), reference[cols].copy().reset_index(drop=True)
        )
        embeddings[name] = {"score": round(float(score), 4), "drifted": bool(is_drift)}
    share = len(drifted) / max(1, len(scores))
    strong = sorted(c for c in drifted if c != TEXT and scores[c] < cfg.strong_p_value)
    return DriftResult(
        detected=any(e["drifted"] for e in embeddings.values())
        or (bool(scores) and share >= cfg.drift_share)
        or bool(strong),
        strong_columns=strong,
        drift_share=round(share, 4),
        threshold=cfg.drift_share,
        drifted_columns=sorted(drifted),
        scores=dict(sorted(scores.items())),
        embeddings=embeddings,
        reference_rows=len(reference),
        current_rows=len(current),
        **routing(current),
    )


def judge(profile, current, cfg: DriftConfig | None = None, seed: int = 0):
    """Compare a batch with the production profile: each request is assigned the reference task it should look like
    (`assign_tasks`), the reference is drawn in that mix, then `detect`. Returns (DriftResult, the reference used)."""
    from monitoring.reference import assign_tasks, matched_reference

    tasks = assign_tasks(profile, current)
    reference = matched_reference(profile, tasks, seed=seed)
    result = detect(reference, current, cfg)
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t] = counts.get(t, 0) + 1
    result.assigned = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return result, reference


def evidently_report(reference, current, cfg: DriftConfig | None = None):
    """Evidently's Report over the same columns and methods as `detect` (per-column drift, question text drift,
    embedding drift of the image and question embeddings); returns the snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.presets import DataDriftPreset

    cfg = cfg or DriftConfig()
    numerical, categorical, text = compared_columns(reference, current)
    embeddings = {
        name: cols
        for name in EMBEDDINGS
        if (cols := embedding_columns(reference, name)) and set(cols) <= set(current.columns)
    }
    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=categorical, text_columns=text, embeddings=embeddings or None
    )
    columns = numerical + categorical + text
    metrics = []
    if columns:
        metrics.append(
            DataDriftPreset(
                columns=columns,
                drift_share=cfg.drift_share,
                threshold=cfg.stat_threshold,
                text_method=TEXT_METHOD,
                text_threshold=cfg.embedding_threshold,
            )
        )
    metrics += [
        EmbeddingsDrift(embeddings_name=name, drift_method=classifier_drift_method(cfg.embedding_threshold))
        for name in embeddings
    ]
    keep = columns + [c for cols in embeddings.values() for c in cols]
    with _pca_pictures():
        return Report(metrics).run(
            Dataset.from_pandas(current[keep].reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(reference[keep].reset_index(drop=True), data_definition=definition),
        )


class _PCA2D:
    """Stands in for the t-SNE that Evidently's embedding drift uses only to draw its 2-D density picture: t-SNE
    took about 30 s per embedding here and crashes the process (Barnes-Hut, segfault) on duplicated points, which
    templated questions produce. The drift score does not depend on it."""

    def __init__(self, n_components: int = 2, **_):
        self.n_components = n_components

    def fit_transform(self, x):
        import numpy as np
        from sklearn.decomposition import PCA

        x = np.asarray(x, dtype=float)
        k = min(self.n_components, x.shape[1], max(1, len(x) - 1))
        out = PCA(n_components=k, random_state=0).fit_transform(x)
        return out if k == self.n_components else np.pad(out, ((0, 0), (0, self.n_components - k)))


@contextmanager
def _pca_pictures():
    """Evidently's embedding-drift picture drawn from a PCA projection instead of t-SNE, for the duration."""
    from evidently.legacy.metrics.data_drift import embeddings_drift

    saved = embeddings_drift.TSNE
    embeddings_drift.TSNE = _PCA2D
    try:
        yield
    finally:
        embeddings_drift.TSNE = saved


def write_report(reference, current, out_dir: Path, name: str, document: dict, cfg: DriftConfig | None = None) -> dict:
    """`<name>.html` (Evidently's report) and `<name>.json` (`document`: the verdict and decision, plus Evidently's
    metric values) under out_dir; returns the paths written. Evidently draws each embedding as a 2-D density, which
    fails on a batch whose embeddings collapse to a few points (templated questions): the report is then drawn again
    with the embeddings jittered by 1% of their spread, said so in the JSON's `report_note`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    note = None
    try:
        snapshot = evidently_report(reference, current, cfg)
    except (ArithmeticError, ValueError) as e:  # numpy.linalg.LinAlgError is a ValueError
        note = f"embedding plots drawn on jittered embeddings ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        snapshot = evidently_report(_jittered(reference), _jittered(current), cfg)
    html, js = out_dir / f"{name}.html", out_dir / f"{name}.json"
    snapshot.save_html(str(html))
    evidently = {}
    for metric in snapshot.dict()["metrics"]:
        label = str(metric.get("metric_name") or metric.get("metric_id") or "")
        evidently[label] = metric.get("value")
    payload = {**document, "evidently": evidently, "html": str(html), "report_note": note}
    tmp = js.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")
    tmp.replace(js)
    return {"html": str(html), "json": str(js)}


def _jittered(frame, scale: float = 0.01, seed: int = 0):
    """A copy with Gaussian noise of `scale` x each embedding column's spread (at least 1e-3) added."""
    import numpy as np

    frame = frame.copy()
    rng = np.random.default_rng(seed)
    for name in EMBEDDINGS:
        cols = embedding_columns(frame, name)
        if cols:
            spread = np.maximum(frame[cols].std().fillna(0).to_numpy(), 1e-3)
            frame[cols] = frame[cols].to_numpy() + rng.normal(0, 1, (len(frame), len(cols))) * spread * scale
    return frame


def _plain(value):
    """JSON for numpy scalars and other stragglers in Evidently's values."""
    try:
        return value.item()
    except AttributeError:
        return str(value)
