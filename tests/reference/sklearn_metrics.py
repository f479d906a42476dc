"""scikit-learn's figures for the metric parity test.

Reads JSON cases from argv[1] ({"name", "k", "y_true", "probs"}, and for binary cases the
thresholds image-learner tuned, "thresholds": {metric: t}; for temperature cases "logits"
instead of "probs"; for regression cases "y_pred", predicted values) and writes, to argv[2], every figure that image-learner computes, as
scikit-learn and SciPy compute it. Where scikit-learn raises for a
class (ROC-AUC of a class absent from y_true), the per-class figure is null and the averages run
over the classes where it is defined, which is image-learner's documented choice.
"""
import json
import sys
import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from scipy import stats
from scipy.special import softmax
from sklearn import metrics as M
from sklearn.calibration import calibration_curve

BINS = 15


def reliability(hits, scores):
    """calibration_curve's bins, with the count of each non-empty bin (its own binning)."""
    prob_true, prob_pred = calibration_curve(hits, scores, n_bins=BINS, strategy="uniform")
    edges = np.linspace(0.0, 1.0, BINS + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], scores), minlength=BINS)
    counts = counts[counts > 0]
    return prob_true, prob_pred, counts


def threshold_metric(name, y, pred):
    return {
        "f1": lambda: M.f1_score(y, pred, zero_division=0),
        "accuracy": lambda: M.accuracy_score(y, pred),
        "balanced_accuracy": lambda: M.balanced_accuracy_score(y, pred),
        "precision": lambda: M.precision_score(y, pred, zero_division=0),
        "recall": lambda: M.recall_score(y, pred, zero_division=0),
        "mcc": lambda: M.matthews_corrcoef(y, pred),
        "youden": lambda: M.recall_score(y, pred) + M.recall_score(1 - y, 1 - pred) - 1,
    }[name]()


def thresholds(c, y, p1):
    """Each metric at image-learner's threshold, and the best over every cut of the scores."""
    cuts = np.unique(p1)[1:]  # predicting "p >= cut" for each distinct score but the lowest
    out = {}
    for name, t in c["thresholds"].items():
        best = max(threshold_metric(name, y, (p1 >= u).astype(int)) for u in cuts)
        out[name] = {"at_ours": float(threshold_metric(name, y, (p1 >= np.float32(t)).astype(int))), "best": float(best)}
    return out


def temperature(c):
    z = np.array(c["logits"], dtype=np.float64)
    y = np.array(c["y_true"])
    nll = lambda u: M.log_loss(y, softmax(z / np.exp(u), axis=1), labels=list(range(z.shape[1])))
    r = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100.0)), method="bounded", options={"xatol": 1e-10})
    return {"temperature": float(np.exp(r.x)), "log_loss": float(r.fun), "log_loss_at_1": float(nll(0.0))}


def per_class_binary(fn, y, p, k):
    out = []
    for c in range(k):
        pos = (y == c).astype(int)
        out.append(float(fn(pos, p[:, c])) if 0 < pos.sum() < len(pos) else None)
    return out


def case(c):
    k = c["k"]
    y = np.array(c["y_true"])
    p = np.array(c["probs"], dtype=np.float64)
    pred = p.argmax(axis=1)
    labels = list(range(k))
    r = {
        "accuracy": M.accuracy_score(y, pred),
        "balanced_accuracy": M.balanced_accuracy_score(y, pred),
        "cohen_kappa": M.cohen_kappa_score(y, pred),
        "matthews_corrcoef": M.matthews_corrcoef(y, pred),
        "log_loss": M.log_loss(y, p, labels=labels),
        "confusion_matrix": M.confusion_matrix(y, pred, labels=labels).tolist(),
    }
    for avg in ["macro", "weighted", "micro"]:
        r[f"{avg}_precision"] = M.precision_score(y, pred, average=avg, zero_division=0)
        r[f"{avg}_recall"] = M.recall_score(y, pred, average=avg, zero_division=0)
        r[f"{avg}_f1"] = M.f1_score(y, pred, average=avg, zero_division=0)
    prec, rec, f1, sup = M.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    cm = np.array(r["confusion_matrix"], dtype=float)
    n = cm.sum()
    spec = []
    for i in range(k):
        tn = n - cm[i, :].sum() - cm[:, i].sum() + cm[i, i]
        neg = n - cm[i, :].sum()
        spec.append(tn / neg if neg else 0.0)
    aucs = per_class_binary(M.roc_auc_score, y, p, k)
    k_list = [t for t in (3, 5) if t < k]
    r["top_k"] = [M.top_k_accuracy_score(y, p, k=t, labels=labels) for t in k_list]
    r["brier"] = M.brier_score_loss(y, p[:, 1]) if k == 2 else M.brier_score_loss(y, p, labels=labels)
    conf = p[np.arange(len(y)), pred]
    prob_true, prob_pred, counts = reliability((pred == y).astype(int), conf)
    gaps = np.abs(prob_true - prob_pred)
    r["ece"] = float(np.sum(counts / len(y) * gaps))
    r["mce"] = float(gaps.max())
    r["reliability_per_class"] = [
        {"hit_rate": t.tolist(), "mean_score": s.tolist(), "count": n.tolist()}
        for t, s, n in (reliability((y == c_).astype(int), p[:, c_]) for c_ in range(k))
    ]
    if "thresholds" in c:
        r["thresholds"] = thresholds(c, y, np.array(c["probs"], dtype=np.float32)[:, 1])
    r["per_class"] = {
        "precision": prec.tolist(), "recall": rec.tolist(), "f1": f1.tolist(), "support": sup.tolist(),
        "specificity": spec, "roc_auc": aucs,
        "average_precision": per_class_binary(M.average_precision_score, y, p, k),
    }
    if k == 2:
        r["roc_auc_macro"] = r["roc_auc_weighted"] = M.roc_auc_score(y, p[:, 1])
    elif len(set(y.tolist())) == k:
        r["roc_auc_macro"] = M.roc_auc_score(y, p, multi_class="ovr", average="macro")
        r["roc_auc_weighted"] = M.roc_auc_score(y, p, multi_class="ovr", average="weighted")
    else:
        defined = [(i, a) for i, a in enumerate(aucs) if a is not None]
        r["roc_auc_macro"] = float(np.mean([a for _, a in defined]))
        w = np.array([(y == i).sum() for i, _ in defined], dtype=float)
        r["roc_auc_weighted"] = float(np.sum(w * np.array([a for _, a in defined])) / w.sum())
    return {key: (float(v) if isinstance(v, (np.floating, float)) else v) for key, v in r.items()}


def regression(c):
    """Every regression figure, as scikit-learn and SciPy give it (NaN, SciPy's verdict on a
    constant input, becomes null; MAPE is null where a true value is 0)."""
    y = np.array(c["y_true"], dtype=np.float64)
    p = np.array(c["y_pred"], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r, rho = stats.pearsonr(y, p).statistic, stats.spearmanr(y, p).statistic
    defined = lambda v: None if np.isnan(v) else float(v)
    return {
        "mae": float(M.mean_absolute_error(y, p)),
        "mse": float(M.mean_squared_error(y, p)),
        "rmse": float(M.root_mean_squared_error(y, p)),
        "r2": float(M.r2_score(y, p)),
        "explained_variance": float(M.explained_variance_score(y, p)),
        "pearson_r": defined(r),
        "spearman_rho": defined(rho),
        "mape": float(M.mean_absolute_percentage_error(y, p)) if np.all(y != 0) else None,
        "has_zero": bool(np.any(y == 0)),
    }


def main():
    cases = json.load(open(sys.argv[1]))
    pick = lambda c: regression(c) if "y_pred" in c else temperature(c) if "logits" in c else case(c)
    json.dump({c["name"]: pick(c) for c in cases}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
