"""Everything checked on a running Galaxy: every <test> of both tools, the tool form as Galaxy
builds it, and the train-then-predict workflow run on uploaded data. Usage:
run.py GALAXY_URL BOOTSTRAP_KEY REPO_DIR PARALLEL. Prints one line per check and
'N passed, N failed'.

The tool tests are run by Galaxy's own test driver, `verify_tool` from galaxy-tool-util, as
`planemo test` runs them (one fresh interactor and history per test), PARALLEL at a time, so
that one test's waits on Galaxy's job queue are another's CPU time. Inputs are pasted by path (the server
reads the repository's test-data/), which needs the admin key this script makes."""
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import requests
from galaxy.tool_util.verify import interactor

URL, KEY, REPO, PARALLEL = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], int(sys.argv[4])
TOOLS = ["image_learner", "image_learner_predict"]
H = {"x-api-key": KEY}
results = []
lock = threading.Lock()


def check(name, ok, detail=""):
    with lock:
        results.append(ok)
        print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"), flush=True)


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
        "class_balance": ("Class balance", "auto"),
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
    check("form offers the nine augmentations", augs == {"horizontal_flip", "vertical_flip", "rotate", "blur", "brightness", "contrast",
                                                         "random_resized_crop", "color_jitter", "trivial_augment"}, augs)
    splits = {o[1] for o in params["split_choice"]["options"]}
    check("form offers 70/10/20 and custom splits", {"70/10/20", "custom"} <= splits, splits)
    tasks = {o[1]: o[0] for o in params["task"]["options"]}
    check("form offers the four tasks, Classification as labelled in the tutorial",
          set(tasks) == {"auto", "classification", "binary", "regression"} and tasks["classification"] == "Classification", tasks)
    metrics = {o[1] for o in params["validation_metric"]["options"]}
    check("form offers every validation metric of both kinds", metrics == {"loss", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "mae", "rmse", "r2"}, metrics)
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


def tool_test(tool_id, index):
    """One <test> of a tool, as planemo runs it; the problem Galaxy's driver found when it fails."""
    gi = interactor.GalaxyInteractorApi(galaxy_url=URL, master_api_key=H["x-api-key"], api_key=H["x-api-key"],
                                        user_api_key_is_admin_key=True)
    found = []
    start = time.time()
    try:
        interactor.verify_tool(tool_id, gi, test_index=index, register_job_data=found.append, quiet=True,
                               force_path_paste=True, maxseconds=600)
    except Exception:
        pass
    data = found[0] if found else {"status": "error", "problem_log": traceback.format_exc()}
    ok = data.get("status") == "success"
    problem = data.get("problem_log") or data.get("output_problems") or (data.get("job") or {}).get("stderr", "")
    check(f"tool test {tool_id}-{index} ({time.time() - start:.0f} s)", ok, str(problem)[:3000])


def guarded(name, fn, *args):
    """A check that cannot run is a failed check, not a crash."""
    try:
        fn(*args)
    except Exception as e:
        check(f"{name} ran", False, repr(e))


login()
cases = [(t, i) for t in TOOLS for i in range(len(interactor.GalaxyInteractorApi(
    galaxy_url=URL, master_api_key=H["x-api-key"], api_key=H["x-api-key"]).get_tool_tests(t)))]
check(f"both tools have tests ({len(cases)})", len(cases) >= 2 and {t for t, _ in cases} == set(TOOLS), cases)
with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
    # The workflow is the longest chain (uploads, train, predict): it starts first.
    jobs = [pool.submit(guarded, "workflow test", workflow_test), pool.submit(guarded, "form test", form_test)]
    jobs += [pool.submit(guarded, f"tool test {t}-{i}", tool_test, t, i) for t, i in cases]
    for j in jobs:
        j.result()
print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
sys.exit(0 if all(results) else 1)
