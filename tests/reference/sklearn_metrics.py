"""scikit-learn's figures for the metric parity test.

Reads JSON cases from argv[1] ({"name", "k", "y_true", "probs"}) and writes, to argv[2], every
figure that image-learner computes, as scikit-learn computes it. Where scikit-learn raises for a
class (ROC-AUC of a class absent from y_true), the per-class figure is null and the averages run
over the classes where it is defined, which is image-learner's documented choice.
"""
import json
import sys

import numpy as np
from sklearn import metrics as M


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


def main():
    cases = json.load(open(sys.argv[1]))
    json.dump({c["name"]: case(c) for c in cases}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
