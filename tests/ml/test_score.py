import json
import re
import shutil
import time

import joblib
import numpy as np
import pytest

from ml import dataset, score


@pytest.fixture()
def scorer(good_model, monkeypatch):
    monkeypatch.setattr(score, "_model", None)
    monkeypatch.delenv(score.FAULT_ENV, raising=False)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(good_model))
    score.init()
    return joblib.load(good_model / "model.pkl")


def _rows(good_model):
    return json.loads((good_model / "sample_input.json").read_text())["data"]


def test_features_match_the_data_contract():
    assert score.FEATURES == dataset.FEATURES


def test_list_rows(scorer, good_model):
    rows = _rows(good_model)
    result = score.run(json.dumps({"data": rows}))
    assert result == {"predictions": pytest.approx(scorer.predict(np.array(rows)).tolist())}
    expected = json.loads((good_model / "model.json").read_text())["sample_predictions"]
    assert result["predictions"] == pytest.approx(expected)


def test_object_rows_in_any_key_order_give_the_same_predictions(scorer, good_model):
    rows = _rows(good_model)
    objects = [dict(reversed(list(zip(score.FEATURES, row, strict=True)))) for row in rows]
    by_name = score.run(json.dumps({"data": objects}))
    assert by_name == score.run(json.dumps({"data": rows}))
    assert len(by_name["predictions"]) == len(rows)


def test_integers_and_bytes_are_accepted(scorer):
    result = score.run(json.dumps({"data": [[0] * 10]}).encode())
    assert result["predictions"] == pytest.approx([float(scorer.intercept_)])


ROW = [0.01] * 10
BAD_REQUESTS = {
    "not json": ("{data: nope", "not valid JSON"),
    "not an object": (json.dumps([ROW]), 'JSON object with a "data" list'),
    "no data key": (json.dumps({"rows": [ROW]}), 'JSON object with a "data" list'),
    "empty data": (json.dumps({"data": []}), "non-empty list"),
    "short row": (json.dumps({"data": [ROW, ROW[:9]]}), "row 1: 9 values, expected 10"),
    "scalar row": (json.dumps({"data": [5]}), "row 0: expected a list of 10 numbers"),
    "string value": (
        json.dumps({"data": [[*ROW[:2], "high", *ROW[3:]]]}),
        'row 0: bmi must be a finite number, got "high"',
    ),
    "boolean value": (json.dumps({"data": [[True, *ROW[1:]]]}), "row 0: age must be a finite number, got true"),
    "null value": (json.dumps({"data": [[*ROW[:9], None]]}), "row 0: s6 must be a finite number, got null"),
    "nan value": ('{"data": [[NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}', "age must be a finite number, got NaN"),
    "huge integer": ('{"data": [[1' + "0" * 400 + ", 0, 0, 0, 0, 0, 0, 0, 0, 0]]}", "age must be a finite number"),
    "missing key": (
        json.dumps({"data": [{f: 0.0 for f in score.FEATURES if f != "bp"}]}),
        "row 0: missing bp (expected age, sex, bmi",
    ),
    "unexpected key": (
        json.dumps({"data": [{**{f: 0.0 for f in score.FEATURES}, "weight": 80}]}),
        "row 0: unexpected weight",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_return_an_error_instead_of_raising(scorer, case):
    body, message = BAD_REQUESTS[case]
    result = score.run(body)
    assert list(result) == ["error"]
    assert message in result["error"]


def test_run_before_init(monkeypatch):
    monkeypatch.setattr(score, "_model", None)
    monkeypatch.delenv(score.FAULT_ENV, raising=False)
    assert score.run(json.dumps({"data": [ROW]})) == {"error": "model not loaded: init() has not run"}


def test_unexpected_failure_is_still_an_error_body(scorer, monkeypatch):
    class Broken:
        def predict(self, X):
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(score, "_model", Broken())
    assert score.run(json.dumps({"data": [ROW]})) == {"error": "internal scoring error: RuntimeError: disk on fire"}


def test_fault_error(scorer, monkeypatch):
    monkeypatch.setenv(score.FAULT_ENV, "error")
    assert score.run(json.dumps({"data": [ROW]})) == {"error": "injected fault: REACTOR_SCORE_FAULT=error"}


def test_fault_slow(scorer, monkeypatch):
    monkeypatch.setenv(score.FAULT_ENV, "slow:120")
    started = time.perf_counter()
    result = score.run(json.dumps({"data": [ROW]}))
    assert time.perf_counter() - started >= 0.12
    assert len(result["predictions"]) == 1


@pytest.mark.parametrize("value", ["slow", "slow:abc", "broken", "slow:-5"])
def test_fault_invalid_value_is_reported(scorer, monkeypatch, value):
    monkeypatch.setenv(score.FAULT_ENV, value)
    result = score.run(json.dumps({"data": [ROW]}))
    assert f"invalid REACTOR_SCORE_FAULT value {value!r}" in result["error"]


def test_init_finds_the_model_in_a_subfolder(tmp_path, good_model, monkeypatch):
    shutil.copytree(good_model, tmp_path / "diabetes-ridge" / "package")
    monkeypatch.setattr(score, "_model", None)
    monkeypatch.delenv(score.FAULT_ENV, raising=False)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "diabetes-ridge"))
    score.init()
    assert "predictions" in score.run(json.dumps({"data": [ROW]}))


def test_init_fails_loudly_without_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=re.escape("expected one model.pkl")):
        score.init()
    monkeypatch.delenv("AZUREML_MODEL_DIR")
    with pytest.raises(RuntimeError, match="AZUREML_MODEL_DIR is not set"):
        score.init()


# -- statuses: what the inference server answers with ------------------------------------------------
def test_score_returns_200_with_predictions(scorer, good_model):
    status, body = score.score(json.dumps({"data": _rows(good_model)}))
    assert status == 200
    assert body == score.run(json.dumps({"data": _rows(good_model)}))


def test_score_returns_400_for_a_request_it_cannot_score(scorer):
    assert score.score("{data: nope")[0] == 400


def test_score_returns_500_for_a_deployment_that_cannot_score(scorer, monkeypatch):
    monkeypatch.setenv(score.FAULT_ENV, "error")
    assert score.score(json.dumps({"data": [ROW]})) == (500, {"error": "injected fault: REACTOR_SCORE_FAULT=error"})
    monkeypatch.delenv(score.FAULT_ENV)
    monkeypatch.setattr(score, "_model", None)
    assert score.score(json.dumps({"data": [ROW]}))[0] == 500


def test_score_returns_500_for_an_invalid_fault_setting(scorer, monkeypatch):
    monkeypatch.setenv(score.FAULT_ENV, "slow:soon")  # the deployment is misconfigured, not the request
    status, body = score.score(json.dumps({"data": [ROW]}))
    assert status == 500 and "invalid REACTOR_SCORE_FAULT value 'slow:soon'" in body["error"]


def test_score_returns_500_for_an_unexpected_failure(scorer, monkeypatch):
    class Broken:
        def predict(self, X):
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(score, "_model", Broken())
    assert score.score(json.dumps({"data": [ROW]}))[0] == 500


def test_fault_error_after_counts_the_calls_of_the_process(scorer, monkeypatch):
    monkeypatch.setattr(score, "_calls", 0)
    monkeypatch.setenv(score.FAULT_ENV, "error-after:2")
    statuses = [score.score(json.dumps({"data": [ROW]}))[0] for _ in range(4)]
    assert statuses == [200, 200, 500, 500]
    fifth = score.run(json.dumps({"data": [ROW]}))
    assert fifth == {"error": "injected fault: REACTOR_SCORE_FAULT=error-after:2 (call 5)"}


def test_run_answers_with_an_aml_response_when_azure_provides_one(scorer, monkeypatch):
    class AMLResponse:  # the shape of azureml.contrib.services.aml_response.AMLResponse
        def __init__(self, message, status_code, response_headers=None, json_str=False):
            self.message, self.status_code, self.json_str = message, status_code, json_str

    monkeypatch.setattr(score, "_AMLResponse", AMLResponse)
    answer = score.run("{data: nope")
    assert (answer.status_code, answer.json_str) == (400, True)
    assert "not valid JSON" in answer.message["error"]
