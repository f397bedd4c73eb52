"""The Python estimators: behaviour, parity with the CLI, errors, pickling, the interpreter lock."""

import os
import pickle
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import normflow

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CLI = os.environ.get("NORMFLOW_BIN", os.path.join(REPO, "target", "release", "normflow"))


def correlated(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) @ np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 0.3], [0.0, 0.0, 0.5]])


def cli(*args):
    assert os.path.exists(CLI), f"build the CLI first (cargo build --release): {CLI}"
    out = subprocess.run([CLI, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("cls", [normflow.RealNVP, normflow.MAF, normflow.NSF])
def test_a_flow_learns_a_gaussian_and_round_trips(cls):
    X, X_test = correlated(3000), correlated(1000, seed=1)
    flow = cls(epochs=30).fit(X)
    # The exact entropy of the Gaussian: 0.5 log det(2 pi e Sigma).
    cov = np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 0.3], [0.0, 0.0, 0.5]])
    entropy = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov.T @ cov)[1]
    nll = -flow.score(X_test)
    assert entropy - 0.05 < nll < entropy + 0.15, (nll, entropy)
    lp = flow.score_samples(X_test)
    assert lp.shape == (1000,) and lp.dtype == np.float64 and np.all(np.isfinite(lp))
    Z = flow.transform(X_test[:50])
    assert np.abs(flow.inverse_transform(Z) - X_test[:50]).max() < 1e-4
    s = flow.sample(500, random_state=3)
    assert s.shape == (500, 3) and s.dtype == np.float32 and np.all(np.isfinite(s))
    assert np.array_equal(s, flow.sample(500, random_state=3))
    assert not np.array_equal(s, flow.sample(500, random_state=4))


def test_float32_float64_and_strided_input_give_the_same_numbers():
    X = correlated(800)
    flow = normflow.NSF(epochs=3).fit(X)
    a = flow.score_samples(X.astype(np.float32))
    b = flow.score_samples(X)
    c = flow.score_samples(np.asfortranarray(X))
    d = flow.score_samples(np.hstack([X, X])[:, :3])
    assert np.array_equal(a, b) and np.array_equal(a, c) and np.array_equal(a, d)


def test_contiguous_float32_input_is_read_in_place_not_copied():
    # A fresh interpreter, so that its peak memory is this test's: a 128 MB float32 array scored
    # (log-prob, encode) must raise the peak by far less than a copy of it would.
    script = """
import resource, numpy as np, normflow
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
flow = normflow.RealNVP(layers=2, hidden=(16,), epochs=1, whiten=False).fit(np.random.default_rng(0).normal(size=(600, 64)))
X = np.random.default_rng(1).standard_normal((500_000, 64), dtype=np.float32)
flow.score_samples(X[:1000])
before = peak()
lp = flow.score_samples(X)
after_lp = peak()
print(X.nbytes / 2**20, after_lp - before, np.isfinite(lp).all())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    size_mb, grew_mb, finite = out.stdout.split()
    assert finite == "True"
    # The output (500,000 float64 values, 4 MB, plus its float32 source) and the threads'
    # 512-row blocks are all that may be new.
    assert float(grew_mb) < 0.25 * float(size_mb), f"scoring a {size_mb} MB array raised the peak by {grew_mb} MB"


def test_same_numbers_as_the_cli_for_the_same_seed_and_data(tmp_path):
    X = correlated(1200)
    data = tmp_path / "data.csv"
    np.savetxt(data, X, delimiter=",", header="a,b,c", comments="")
    for kind, cls, extra in [("nsf", normflow.NSF, []), ("realnvp", normflow.RealNVP, []), ("maf", normflow.MAF, ["--layers", "3"])]:
        model = tmp_path / f"{kind}.safetensors"
        cli("train", str(data), "--flow", kind, "--epochs", "4", "--seed", "7", "-q", "-o", str(model), *extra)
        from_cli = np.loadtxt(cli("log-prob", str(model), str(data)).splitlines()[1:], dtype=np.float64)
        params = {"layers": 3} if extra else {}
        # The same rows read as f32, as the CLI reads its file.
        ours = cls(epochs=4, random_state=7, **params).fit(np.loadtxt(data, delimiter=",", skiprows=1, dtype=np.float32))
        assert np.abs(ours.score_samples(X.astype(np.float32)) - from_cli).max() <= 1e-6 * (1 + np.abs(from_cli).max()), kind
        # And the model file written from Python scores the same in the CLI.
        saved = tmp_path / f"{kind}-py.safetensors"
        ours.save(saved)
        again = np.loadtxt(cli("log-prob", str(saved), str(data)).splitlines()[1:], dtype=np.float64)
        assert np.array_equal(again, from_cli), kind
        loaded = normflow.load(saved)
        assert np.array_equal(loaded.log_prob(X.astype(np.float32)), ours.score_samples(X.astype(np.float32)))


def test_a_conditional_flow_takes_its_context():
    rng = np.random.default_rng(0)
    c = rng.uniform(-2, 2, size=(3000, 1))
    X = np.hstack([c + 0.3 * rng.normal(size=(3000, 1)), rng.normal(size=(3000, 1))])
    flow = normflow.NSF(epochs=20).fit(X, context=c)
    ctx = np.full((400, 1), 1.5)
    s = flow.sample(400, context=ctx, random_state=0)
    assert abs(s[:, 0].mean() - 1.5) < 0.15
    with pytest.raises(ValueError, match="context"):
        flow.score_samples(X[:5], context=np.zeros((5, 2)))


def test_bad_input_raises_value_error_with_the_librarys_message(tmp_path):
    X = correlated(500)
    flow = normflow.RealNVP(epochs=2).fit(X)
    bad = X[:10].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        flow.score_samples(bad)
    with pytest.raises(ValueError, match="features"):
        flow.score_samples(X[:, :2])
    with pytest.raises(ValueError):
        normflow.NSF().fit(X[:1])
    with pytest.raises(ValueError, match="batch"):
        normflow.NSF(batch_size=0).fit(X)
    path = tmp_path / "m.safetensors"
    flow.save(path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.safetensors"):
        normflow.load(truncated)
    with pytest.raises(ValueError, match="missing.safetensors"):
        normflow.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="not fitted"):
        normflow.NSF().score_samples(X)


def test_pickle_and_clone_keep_the_model_and_the_parameters():
    from sklearn.base import clone

    X = correlated(600)
    flow = normflow.MAF(layers=3, epochs=3).fit(X)
    back = pickle.loads(pickle.dumps(flow))
    assert np.array_equal(back.score_samples(X), flow.score_samples(X))
    fresh = clone(flow)
    assert fresh.get_params() == flow.get_params() and not hasattr(fresh, "model_")


def test_pipeline_and_grid_search():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = correlated(1500)
    pipe = make_pipeline(StandardScaler(), normflow.NSF(epochs=5))
    pipe.fit(X)
    assert np.isfinite(pipe.score(X))
    search = GridSearchCV(normflow.NSF(epochs=5), {"layers": [1, 3]}, cv=3).fit(X)
    assert search.best_params_["layers"] in (1, 3)
    assert len(search.cv_results_["mean_test_score"]) == 2


def test_the_progress_callback_sees_training_and_its_errors_surface():
    X = correlated(2000)
    seen = []
    normflow.NSF(epochs=5, progress=seen.append).fit(X)
    assert seen, "no progress reported"
    assert seen[-1]["epoch"] >= 1 and 0 < seen[-1]["step"] <= seen[-1]["total_steps"]
    assert {"step", "total_steps", "epoch", "train_nll", "val_nll", "seconds"} <= set(seen[0])

    def boom(_):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        normflow.NSF(epochs=2, progress=boom).fit(X)


def test_training_releases_the_interpreter_lock():
    X = correlated(20000)
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    start = time.perf_counter()
    normflow.NSF(epochs=3, hidden=(256, 256)).fit(X)
    seconds = time.perf_counter() - start
    done.set()
    t.join()
    during = [x for x in ticks if start <= x <= start + seconds]
    # The other thread ran all along: ticks every millisecond or so, not one at the end.
    assert seconds > 0.2 and len(during) > 0.2 * seconds / 0.001, (seconds, len(during))


def test_an_anomaly_detector_flags_shifted_rows_and_the_cli_agrees(tmp_path):
    X = correlated(4000)
    rng = np.random.default_rng(5)
    outliers = correlated(200, seed=9) + rng.choice([-4.0, 4.0], size=(200, 3))
    det = normflow.AnomalyDetector(contamination=0.02, flow_params={"epochs": 20}).fit(X)
    normal_flags = det.predict(correlated(2000, seed=2))
    assert 0.005 < np.mean(normal_flags == -1) < 0.06
    assert np.mean(det.predict(outliers) == -1) > 0.9
    assert np.array_equal(det.decision_function(outliers) < 0, det.predict(outliers) == -1)
    path = tmp_path / "det.safetensors"
    det.save(path)
    rows = tmp_path / "rows.csv"
    np.savetxt(rows, outliers.astype(np.float32), delimiter=",", header="a,b,c", comments="")
    out = cli("anomaly", "score", str(path), str(rows)).splitlines()
    header = out[0].split(",")
    flags = np.array([int(float(line.split(",")[header.index("flag")])) for line in out[1:]])
    assert np.array_equal(flags == 1, det.predict(outliers.astype(np.float32)) == -1)
    back = pickle.loads(pickle.dumps(det))
    assert np.array_equal(back.predict(outliers), det.predict(outliers))


def test_flow_matching_from_python():
    X = correlated(2000)
    flow = normflow.FlowMatching(hidden=(64, 64), max_steps=600, lr=2e-3).fit(X)
    lp = flow.score_samples(X[:100])
    assert np.all(np.isfinite(lp)) and flow.sample(10, random_state=0).shape == (10, 3)
    skewed = normflow.FlowMatching(hidden=(64, 64), max_steps=600, lr=2e-3, time_sampling=(1.2, 1.0)).fit(X)
    lp_skewed = skewed.score_samples(X[:100])
    assert np.all(np.isfinite(lp_skewed)) and not np.allclose(lp, lp_skewed)
    assert abs(lp.mean() - lp_skewed.mean()) < 0.3, (lp.mean(), lp_skewed.mean())
    with pytest.raises(ValueError, match="standard deviation"):
        normflow.FlowMatching(max_steps=10, time_sampling=(0.0, -1.0)).fit(X)


def test_glow_on_small_images_and_the_cli_reads_its_model(tmp_path):
    # 4x4 grayscale "images": a bright square on a dark background at a random place, plus noise.
    rng = np.random.default_rng(0)
    X = rng.integers(0, 40, size=(600, 4, 4))
    for k in range(len(X)):
        r, c = rng.integers(0, 3, size=2)
        X[k, r:r + 2, c:c + 2] += 200
    X = X.astype(np.uint8)
    glow = normflow.Glow(levels=1, steps=2, hidden=8, max_steps=150, eval_every=50)
    before = glow.set_params(max_steps=1).fit(X).bits_per_dim(X)
    glow.set_params(max_steps=150).fit(X)
    after = glow.bits_per_dim(X)
    assert after < before - 0.3 and after < 8.0, (before, after)
    s = glow.sample(16, temperature=1.0, random_state=1)
    assert s.shape == (16, 1, 4, 4) and s.dtype == np.uint8
    with pytest.raises(ValueError, match="shape"):
        glow.score_samples(X[:, :3, :3])
    with pytest.raises(ValueError, match="0..=255"):
        normflow.Glow(max_steps=2).fit(X.astype(np.float32) + 0.5)
    # The CLI evaluates the saved model to the same bits/dim.
    model, data = tmp_path / "glow.safetensors", tmp_path / "images.npy"
    glow.save(model)
    np.save(data, X)
    import json
    report = json.loads(cli("image", "eval", str(model), str(data), "--json"))
    assert abs(report["bits_per_dim"] - after) < 1e-5, (report, after)
    back = pickle.loads(pickle.dumps(glow))
    assert np.array_equal(back.score_samples(X[:20]), glow.score_samples(X[:20]))


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Python"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "nsf.safetensors").exists()


def test_split_products_score_like_f32():
    assert normflow.product_precision() in ("f32", "bf16x3")
    X = correlated(3000)
    flow = normflow.RealNVP(hidden=(128, 128), epochs=3, random_state=0).fit(X)
    before = normflow.product_precision()
    try:
        normflow.set_product_precision("f32")
        plain = flow.score_samples(X)
        has_amx = normflow.set_product_precision("bf16x3")
        assert normflow.product_precision() == "bf16x3"
        split = flow.score_samples(X)
        # Split-bfloat16 products move log-densities by far less than a millinat; without AMX
        # they fall back to f32 exactly.
        assert np.max(np.abs(split - plain)) < 1e-3
        if not has_amx:
            assert np.array_equal(split, plain)
        with pytest.raises(ValueError, match="unknown product precision"):
            normflow.set_product_precision("fp8")
    finally:
        normflow.set_product_precision(before)
