"""Tests against a running Galaxy: the tool form as Galaxy builds it, and the train-then-predict
workflow run on uploaded data. Usage: run.py GALAXY_URL ADMIN_KEY REPO_DIR. Prints one line per
check and 'N passed, N failed'."""
import sys
import time

import requests

URL, KEY, REPO = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
H = {"x-api-key": KEY}
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))


def api(method, path, **kw):
    r = requests.request(method, URL + "/api/" + path, headers=H, timeout=120, **kw)
    if not r.ok:
        raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:500]}")
    return r.json()


def login():
    """The bootstrap key may only create users: make the admin user and use its own key."""
    user = api("POST", "users", json={"username": "admin", "email": "admin@example.org", "password": "image-learner-test"})
    H["x-api-key"] = api("POST", f"users/{user['id']}/api_key")


def flatten(inputs):
    """Every parameter of a built form, inside sections and conditionals too."""
    for i in inputs:
        yield i
        if "test_param" in i:
            yield i["test_param"]
        yield from flatten(i.get("inputs") or [])
        for case in i.get("cases") or []:
            yield from flatten(case.get("inputs") or [])


def form_test():
    history = api("POST", "histories", json={"name": "form test"})["id"]
    form = api("GET", "tools/image_learner/build", params={"history_id": history})
    params = {p["name"]: p for p in flatten(form["inputs"])}
    expect = {
        "input_images": ("Input image collection (ZIP)", None),
        "input_csv": ("Image metadata (CSV)", None),
        "task": ("Task", "classification"),
        "model": ("Model", "caformer_s18_384"),
        "epochs": ("Number of epochs", "10"),
        "batch_size": ("Batch size", "32"),
        "use_pretrained": ("Use pretrained weights", "true"),
        "fine_tune": ("Fine tune pretrained model", "true"),
        "learning_rate": ("Learning rate", "0.001"),
        "random_seed": ("Random seed", "42"),
        "augmentation": ("Data augmentation", None),
        "split_choice": ("Data split (train/validation/test)", "70/10/20"),
        "image_column": ("Image column", None),
        "label_column": ("Label column", None),
        "split_column": ("Split column", None),
        "group_column": ("Group column for leakage-free splitting", None),
        "image_size": ("Image size", None),
        "early_stop": ("Early stopping (epochs)", None),
        "validation_metric": ("Validation metric", "loss"),
        "threshold_mode": ("Decision threshold (binary classification)", "auto"),
        "threshold_metric": ("Threshold chosen to maximise", "f1"),
        "threshold": ("Threshold", "0.5"),
        "calibrate": ("Calibrate probabilities", "temperature"),
        "loss": ("Regression loss", "mse"),
        "label_smoothing": ("Label smoothing", None),
        "class_balance": ("Class balance", "none"),
    }
    for name, (label, default) in expect.items():
        p = params.get(name)
        if p is None:
            check(f"form has {name}", False, "missing")
            continue
        check(f"form label of {name}", p.get("label") == label, p.get("label"))
        if default is not None:
            check(f"form default of {name}", str(p.get("value")) == default, p.get("value"))
    models = [o[1] for o in params["model"]["options"]]
    check("form offers caformer_s18_384, resnet18, efficientnet_lite0", {"caformer_s18_384", "resnet18", "efficientnet_lite0"} <= set(models))
    augs = {o[1] for o in params["augmentation"]["options"]}
    check("form offers the six augmentations", augs == {"horizontal_flip", "vertical_flip", "rotate", "blur", "brightness", "contrast"}, augs)
    splits = {o[1] for o in params["split_choice"]["options"]}
    check("form offers 70/10/20 and custom splits", {"70/10/20", "custom"} <= splits, splits)
    tasks = {o[1]: o[0] for o in params["task"]["options"]}
    check("form offers the four tasks, Classification as labelled in the tutorial",
          set(tasks) == {"auto", "classification", "binary", "regression"} and tasks["classification"] == "Classification", tasks)
    metrics = {o[1] for o in params["validation_metric"]["options"]}
    check("form offers every validation metric of both kinds", metrics == {"loss", "accuracy", "macro_f1", "roc_auc", "mae", "rmse", "r2"}, metrics)
    losses = {o[1] for o in params["loss"]["options"]}
    check("form offers the three regression losses", losses == {"mse", "mae", "huber"}, losses)
    sections = [i for i in form["inputs"] if i.get("type") == "section"]
    check("advanced options are a section", any(s.get("title") == "Advanced options" for s in sections))


def wait_history(history_id, limit=900):
    start = time.time()
    while time.time() - start < limit:
        items = api("GET", f"histories/{history_id}/contents", params={"v": "dev", "keys": "id,state,name,hid"})
        states = {i["state"] for i in items}
        if states and states <= {"ok", "error", "failed_metadata", "paused", "deferred", "discarded"}:
            return items
        time.sleep(3)
    raise TimeoutError("history did not finish")


def workflow_test():
    history = api("POST", "histories", json={"name": "image-learner workflow test"})["id"]
    targets = [{
        "destination": {"type": "hdas"},
        "items": [
            {"src": "path", "path": f"{REPO}/test-data/sample_images.zip", "ext": "zip", "name": "sample_images.zip"},
            {"src": "path", "path": f"{REPO}/test-data/sample_metadata.csv", "ext": "csv", "name": "sample_metadata.csv"},
        ],
    }]
    api("POST", "tools/fetch", json={"history_id": history, "targets": targets})
    uploaded = {i["name"]: i["id"] for i in wait_history(history)}
    wf = api("POST", "workflows", json={"from_path": f"{REPO}/galaxy/workflows/image_learner_train_predict.gxwf.yml"})
    inv = api("POST", f"workflows/{wf['id']}/invocations", json={
        "history_id": history,
        "inputs_by": "name",
        # Optional advanced parameters left out of the workflow's state take their defaults.
        "allow_tool_state_corrections": True,
        "inputs": {"images": {"src": "hda", "id": uploaded["sample_images.zip"]}, "metadata": {"src": "hda", "id": uploaded["sample_metadata.csv"]}},
    })
    start = time.time()
    state = None
    while state not in ("scheduled", "failed", "cancelled") and time.time() - start < 300:
        time.sleep(3)
        state = api("GET", f"invocations/{inv['id']}")["state"]
    check("workflow: the invocation was scheduled", state == "scheduled", state)
    time.sleep(5)
    items = wait_history(history)
    check("workflow: its jobs made datasets", len(items) >= 7, [i["name"] for i in items])
    errors = [i["name"] for i in items if i["state"] != "ok"]
    check("workflow: every dataset ok", not errors, errors)
    names = {i["name"]: i["id"] for i in items}
    for suffix in ["Best Model", "Model Report", "Training History", "Predictions (Test Set)"]:
        check(f"workflow: Image Learner made its {suffix}", any(n.startswith("Image Learner on") and n.endswith(suffix) for n in names), list(names))
    predicted = [i for n, i in names.items() if n.startswith("Image Learner: predict on") and n.endswith("Predictions")]
    check("workflow: predict ran on the Best Model", len(predicted) == 1, list(names))
    if predicted:
        text = requests.get(f"{URL}/api/datasets/{predicted[0]}/display", headers=H, timeout=120).text
        lines = text.strip().splitlines()
        check("workflow: predict classified all 180 images", len(lines) == 181, len(lines))
        check("workflow: predictions have a probability per class", lines[0].count("prob_") == 3, lines[0])


login()
try:
    form_test()
except Exception as e:  # a failure to reach the form is a failed check, not a crash
    check("form test ran", False, repr(e))
try:
    workflow_test()
except Exception as e:
    check("workflow test ran", False, repr(e))
print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
sys.exit(0 if all(results) else 1)
