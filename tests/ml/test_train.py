import hashlib
import json

import joblib
import numpy as np
import pytest

from ml import train as train_module
from ml.dataset import FEATURES, fingerprint, load_many
from ml.errors import MLError
from ml.train import train


def _json(path):
    return json.loads(path.read_text())


def test_model_directory_contents(good_model, good_dir):
    assert sorted(p.name for p in good_model.iterdir()) == [
        "baseline.json",
        "model.json",
        "model.pkl",
        "sample_input.json",
    ]
    card = _json(good_model / "model.json")
    files = sorted(good_dir.glob("*.csv"))
    assert card["algorithm"] == "sklearn.linear_model.Ridge"
    assert card["alpha"] == 0.5
    assert card["features"] == list(FEATURES)
    assert card["training_rows"] == 360
    assert [f["name"] for f in card["training_files"]] == [p.name for p in files]
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    assert [f["sha256"] for f in card["training_files"]] == hashes
    assert card["training_data_sha256"] == fingerprint(hashes)
    assert set(card["train_metrics"]) == {"rmse", "mae", "r2"}
    assert card["train_metrics"]["r2"] > 0.3


def test_model_predictions_match_the_training_record(good_model, good_dir):
    model = joblib.load(good_model / "model.pkl")
    X, y = load_many([good_dir])
    rmse = float(np.sqrt(np.mean((model.predict(X) - y) ** 2)))
    assert rmse == pytest.approx(_json(good_model / "model.json")["train_metrics"]["rmse"])
    assert model.alpha == 0.5


def test_baseline_summarises_every_feature(good_model, good_dir):
    baseline = _json(good_model / "baseline.json")
    X, _ = load_many([good_dir])
    assert baseline["rows"] == 360
    assert list(baseline["features"]) == list(FEATURES)
    for i, name in enumerate(FEATURES):
        summary = baseline["features"][name]
        assert sum(summary["counts"]) == 360
        assert len(summary["edges"]) == len(summary["counts"]) + 1
        assert summary["edges"] == sorted(summary["edges"])
        assert summary["mean"] == pytest.approx(X[:, i].mean())
        assert summary["std"] == pytest.approx(X[:, i].std())
    assert len(baseline["features"]["bmi"]["counts"]) == 10
    # the two-valued sex column gets one bin per value, so a change in their ratio stays visible
    sex = X[:, FEATURES.index("sex")]
    low, high = np.unique(sex)
    assert baseline["features"]["sex"]["counts"] == [int((sex == low).sum()), int((sex == high).sum())]


def test_sample_input_is_a_scoring_request(good_model):
    sample = _json(good_model / "sample_input.json")
    assert list(sample) == ["data"]
    assert len(sample["data"]) == 3
    assert all(len(row) == len(FEATURES) for row in sample["data"])
    model = joblib.load(good_model / "model.pkl")
    expected = _json(good_model / "model.json")["sample_predictions"]
    assert model.predict(np.array(sample["data"])).tolist() == pytest.approx(expected)


def test_alpha_and_seed_are_recorded(tmp_path, good_dir):
    card = train([good_dir], tmp_path, alpha=2.0, seed=9)
    assert card["alpha"] == 2.0 and card["seed"] == 9
    assert joblib.load(tmp_path / "model.pkl").alpha == 2.0
    with pytest.raises(MLError, match="alpha must be"):
        train([good_dir], tmp_path / "x", alpha=-1.0)


def test_cli_trains_from_files_and_directories(tmp_path, good_dir, capsys):
    files = sorted(good_dir.glob("*.csv"))
    code = train_module.main(["--data", str(files[0]), str(good_dir), "--out", str(tmp_path / "m"), "--alpha", "1"])
    assert code == 0
    assert "trained sklearn.linear_model.Ridge on 480 rows from 4 files" in capsys.readouterr().out
    assert _json(tmp_path / "m" / "model.json")["training_rows"] == 480


def test_cli_bad_data_exits_nonzero_with_one_line(tmp_path, good_dir, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join((*FEATURES, "y")) + "\n" + ",".join(["1"] * 10) + ",oops\n")
    code = train_module.main(["--data", str(good_dir), str(bad), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert f"{bad}: line 2, column y: non-numeric value 'oops'" in err
    assert not (tmp_path / "m").exists()


def test_cli_needs_two_rows(tmp_path, capsys):
    one = tmp_path / "one.csv"
    one.write_text(",".join((*FEATURES, "y")) + "\n" + ",".join(["1"] * 11) + "\n")
    assert train_module.main(["--data", str(one), "--out", str(tmp_path / "m")]) == 1
    assert "at least 2" in capsys.readouterr().err
