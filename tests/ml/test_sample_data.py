import numpy as np
import pytest

from ml import sample_data
from ml.dataset import FEATURES, load_csv, load_many
from ml.sample_data import holdout_rows, make_batch, split_indices, write_batches


def test_batches_are_deterministic_in_seed(tmp_path):
    first = write_batches(tmp_path / "a", files=2, rows=20, seed=7)
    again = write_batches(tmp_path / "b", files=2, rows=20, seed=7)
    other = write_batches(tmp_path / "c", files=2, rows=20, seed=8)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[0].read_bytes() != other[0].read_bytes()
    assert first[0].read_bytes() != first[1].read_bytes()


def test_batch_files_follow_the_contract(tmp_path):
    paths = write_batches(tmp_path, files=3, rows=25, seed=0, kind="shifted")
    assert [p.name for p in paths] == [f"diabetes-shifted-seed0-00{i}.csv" for i in range(3)]
    X, y = load_many(paths)
    assert X.shape == (75, len(FEATURES))
    assert y.shape == (75,)


def test_holdout_is_fixed_and_disjoint_from_training_rows():
    train_idx, held_idx = split_indices()
    assert not set(train_idx) & set(held_idx)
    assert len(train_idx) + len(held_idx) == 442
    X1, y1 = holdout_rows()
    X2, y2 = holdout_rows()
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert X1.shape == (len(held_idx), len(FEATURES))


def test_poor_batches_break_the_feature_target_relation():
    X_good, y_good = make_batch(400, seed=3, kind="good")
    X_poor, y_poor = make_batch(400, seed=3, kind="poor")
    bmi = FEATURES.index("bmi")
    assert np.corrcoef(X_good[:, bmi], y_good)[0, 1] > 0.4
    assert abs(np.corrcoef(X_poor[:, bmi], y_poor)[0, 1]) < 0.2


def test_shifted_batches_move_some_feature_means():
    X_good, _ = make_batch(400, seed=4, kind="good")
    X_shift, _ = make_batch(400, seed=4, kind="shifted")
    moved = (X_shift.mean(axis=0) - X_good.mean(axis=0)) / X_good.std(axis=0)
    for name in ("bmi", "bp", "s5"):
        assert moved[FEATURES.index(name)] > 0.8
    assert abs(moved[FEATURES.index("age")]) < 1e-9


def test_sex_stays_a_two_valued_code():
    X, _ = make_batch(200, seed=5)
    assert len(np.unique(X[:, FEATURES.index("sex")])) == 2


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown kind"):
        make_batch(10, seed=0, kind="weird")
    with pytest.raises(ValueError, match="rows must be at least 1"):
        make_batch(0, seed=0)
    with pytest.raises(ValueError, match="files must be at least 1"):
        write_batches(tmp_path, files=0, rows=10, seed=0)


def test_cli_holdout_writes_only_the_test_set(tmp_path, capsys):
    assert sample_data.main(["--out", str(tmp_path), "--holdout"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["holdout.csv"]
    X, y = load_csv(tmp_path / "holdout.csv")
    assert np.array_equal(X, holdout_rows()[0]) and np.array_equal(y, holdout_rows()[1])
    assert capsys.readouterr().out.strip() == str(tmp_path / "holdout.csv")


def test_cli_batches_and_argument_errors(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--files", "2", "--rows", "5", "--seed", "3", "--kind", "poor"]
    assert sample_data.main(args) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diabetes-poor-seed3-000.csv", "diabetes-poor-seed3-001.csv"]
    with pytest.raises(SystemExit) as exit_:
        sample_data.main(["--out", str(tmp_path), "--holdout", "--files", "2"])
    assert exit_.value.code == 2
    assert "--holdout writes the fixed test set only" in capsys.readouterr().err
