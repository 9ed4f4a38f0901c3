import dataclasses
import json
import math
import shutil

import joblib
import numpy as np
import pytest

from ml import evaluate as evaluate_module
from ml.dataset import sha256_file
from ml.errors import MLError, ModelError
from ml.evaluate import Verdict, decide, evaluate


def test_no_champion_passes(good_model, holdout):
    verdict = evaluate(good_model, None, holdout)
    assert verdict.passed
    assert verdict.champion is None and verdict.improvement is None
    assert verdict.metric == "rmse" and verdict.challenger > 0
    assert verdict.test_rows == 88
    assert verdict.challenger_sha256 == sha256_file(good_model / "model.pkl")
    assert "no champion" in verdict.reason


def test_poor_challenger_loses_to_good_champion(good_model, poor_model, holdout):
    verdict = evaluate(poor_model, good_model, holdout, metric="rmse")
    assert not verdict.passed
    assert verdict.challenger > verdict.champion
    assert verdict.improvement == pytest.approx((verdict.champion - verdict.challenger) / verdict.champion)
    assert verdict.improvement < 0


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_good_challenger_beats_poor_champion_on_every_metric(good_model, poor_model, holdout, metric):
    verdict = evaluate(good_model, poor_model, holdout, metric=metric)
    assert verdict.passed
    assert verdict.improvement > 0
    if metric == "r2":
        assert verdict.challenger > verdict.champion
    else:
        assert verdict.challenger < verdict.champion


def test_min_improvement_is_respected(good_model, poor_model, holdout):
    actual = evaluate(good_model, poor_model, holdout).improvement
    assert evaluate(good_model, poor_model, holdout, min_improvement=actual * 0.99).passed
    refused = evaluate(good_model, poor_model, holdout, min_improvement=actual * 1.01)
    assert not refused.passed
    assert "misses the required" in refused.reason


def test_identical_model_passes_only_without_required_gain(good_model, holdout):
    assert evaluate(good_model, good_model, holdout, min_improvement=0.0).passed
    assert evaluate(good_model, good_model, holdout).improvement == 0.0
    assert not evaluate(good_model, good_model, holdout, min_improvement=0.01).passed


def test_decide_rules():
    passed, improvement, reason = decide("r2", 0.5, 0.4, 0.2)
    assert passed and improvement == pytest.approx(0.25)
    assert reason == "challenger r2=0.5, champion r2=0.4: +25.00% meets the required +20.00%"
    assert not decide("r2", 0.4, 0.5, 0.0)[0]
    assert decide("r2", 0.1, -0.5, 0.0)[1] == pytest.approx(1.2)
    assert not decide("mae", 11.0, 10.0, -0.05)[0]
    assert decide("mae", 10.4, 10.0, -0.05)[0]
    assert decide("rmse", 0.0, 0.0, 0.0)[:2] == (True, None)
    assert not decide("rmse", 1.0, 0.0, 0.0)[0]
    assert decide("rmse", math.inf, 10.0, 0.0)[:2] == (False, None)
    assert decide("rmse", 5.0, math.inf, 0.5)[:2] == (True, None)


def test_non_finite_predictions_fail_and_serialise_as_null(tmp_path, good_model, holdout, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(good_model, broken)
    model = joblib.load(broken / "model.pkl")
    model.coef_ = np.full_like(model.coef_, np.nan)
    joblib.dump(model, broken / "model.pkl")
    out = tmp_path / "verdict.json"
    assert evaluate_module.main(["--challenger", str(broken), "--test", str(holdout), "--out", str(out)]) == 0
    verdict = json.loads(out.read_text())
    assert verdict["passed"] is False and verdict["challenger"] is None
    assert "FAILED" in capsys.readouterr().out


def test_cli_writes_the_verdict_file(tmp_path, good_model, poor_model, holdout, capsys):
    out = tmp_path / "out" / "verdict.json"
    args = ["--challenger", str(poor_model), "--champion", str(good_model), "--test", str(holdout)]
    code = evaluate_module.main([*args, "--metric", "mae", "--min-improvement", "0.02", "--out", str(out)])
    assert code == 0
    verdict = json.loads(out.read_text())
    assert {"passed", "metric", "challenger", "champion", "improvement", "reason"} <= set(verdict)
    assert verdict["passed"] is False and verdict["metric"] == "mae" and verdict["min_improvement"] == 0.02
    assert verdict == Verdict(**verdict).to_dict()
    assert capsys.readouterr().out.startswith("FAILED: challenger mae=")


def test_missing_champion_directory_is_an_error_not_a_pass(tmp_path, good_model, holdout, capsys):
    out = tmp_path / "verdict.json"
    args = ["--challenger", str(good_model), "--champion", str(tmp_path / "gone"), "--test", str(holdout)]
    assert evaluate_module.main([*args, "--out", str(out)]) == 1
    assert "gone: model directory does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_models_are_found_one_folder_down(tmp_path, good_model, holdout):
    shutil.copytree(good_model, tmp_path / "mount" / "diabetes-ridge")
    assert evaluate(tmp_path / "mount", None, holdout).challenger == evaluate(good_model, None, holdout).challenger


def test_bad_inputs(tmp_path, good_model, holdout):
    with pytest.raises(MLError, match="unknown metric"):
        evaluate(good_model, None, holdout, metric="accuracy")
    with pytest.raises(MLError, match="finite"):
        evaluate(good_model, None, holdout, min_improvement=math.nan)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="cannot load model"):
        evaluate(tmp_path / "junk", None, holdout)


def test_verdict_is_frozen(good_model, holdout):
    verdict = evaluate(good_model, None, holdout)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.passed = False
