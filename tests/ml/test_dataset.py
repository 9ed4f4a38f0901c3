import hashlib
import re

import numpy as np
import pytest

from ml.dataset import COLUMNS, FEATURES, DataError, load_batches, load_csv, load_many, write_csv

HEADER = ",".join(COLUMNS)
ROW = ",".join(str(0.01 * i) for i in range(len(FEATURES))) + ",151"


def _file(tmp_path, text, name="batch.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


BAD_FILES = {
    "empty": ("", "empty file"),
    "blank": ("\n \n", "empty file"),
    "header only": (HEADER + "\n", "no data rows"),
    "missing column": (HEADER.replace(",s6", "") + "\n" + ROW + "\n", "missing columns s6"),
    "unexpected column": (HEADER + ",extra\n" + ROW + ",1\n", "unexpected columns 'extra'"),
    "duplicated column": (HEADER + ",bmi\n" + ROW + ",1\n", "duplicated columns bmi"),
    "non-numeric": (
        f"{HEADER}\n{ROW}\n{ROW.replace('0.02', 'abc', 1)}\n",
        "line 3, column bmi: non-numeric value 'abc'",
    ),
    "empty cell": (f"{HEADER}\n{ROW.replace('0.03', '', 1)}\n", "line 2, column bp: empty value"),
    "nan": (f"{HEADER}\n{ROW[: -len('151')]}nan\n", "line 2, column y: non-finite value 'nan'"),
    "infinity": (f"{HEADER}\n{ROW.replace('0.0,', 'inf,', 1)}\n", "line 2, column age: non-finite value 'inf'"),
    "short row": (f"{HEADER}\n{ROW}\n{ROW.rsplit(',', 1)[0]}\n", "line 3: 10 cells, expected 11"),
    "blank line": (f"{HEADER}\n{ROW}\n\n{ROW}\n", "line 3: blank line"),
    "stray quote": (f'{HEADER}\n"1"x,{ROW.split(",", 1)[1]}\n', "line 2: malformed CSV"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_names_file_and_problem(tmp_path, case):
    text, problem = BAD_FILES[case]
    path = _file(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_csv(path)
    assert str(path) in str(err.value)
    assert problem in str(err.value)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(HEADER.encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match=re.escape("latin.csv: not UTF-8")):
        load_csv(path)


def test_missing_file_and_empty_directory(tmp_path):
    with pytest.raises(DataError, match=re.escape("nope.csv: no such file")):
        load_many([tmp_path / "nope.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=re.escape("empty: directory contains no .csv files")):
        load_many([tmp_path / "empty"])


def test_one_bad_file_fails_the_whole_load(tmp_path):
    _file(tmp_path, f"{HEADER}\n{ROW}\n", "a.csv")
    _file(tmp_path, f"{HEADER}\n", "b.csv")
    with pytest.raises(DataError, match=re.escape("b.csv: no data rows")):
        load_many([tmp_path])


def test_columns_in_any_order_map_to_contract_order(tmp_path):
    values = dict(zip(COLUMNS, [float(i) for i in range(len(COLUMNS))], strict=True))
    shuffled = list(reversed(COLUMNS))
    path = _file(tmp_path, ",".join(shuffled) + "\n" + ",".join(str(values[c]) for c in shuffled) + "\n")
    X, y = load_csv(path)
    assert X.tolist() == [[values[f] for f in FEATURES]]
    assert y.tolist() == [values["y"]]


def test_byte_order_mark_and_padding_are_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (" , ".join(COLUMNS) + "\n" + ROW + "\n").encode())
    X, y = load_csv(path)
    assert X.shape == (1, len(FEATURES))
    assert y[0] == 151.0


def test_write_then_load_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, len(FEATURES))), rng.normal(size=5) * 100
    path = write_csv(tmp_path / "sub" / "rt.csv", X, y)
    X2, y2 = load_csv(path)
    assert np.array_equal(X, X2)
    assert np.array_equal(y, y2)


def test_load_many_stacks_files_and_directories_and_hashes_bytes(tmp_path):
    a = write_csv(tmp_path / "dir" / "a.csv", np.zeros((2, len(FEATURES))), np.array([1.0, 2.0]))
    b = write_csv(tmp_path / "dir" / "b.csv", np.ones((3, len(FEATURES))), np.array([3.0, 4.0, 5.0]))
    c = write_csv(tmp_path / "c.csv", np.ones((1, len(FEATURES))), np.array([6.0]))
    X, y = load_many([tmp_path / "dir", c])
    assert X.shape == (6, len(FEATURES))
    assert y.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    batches = load_batches([tmp_path / "dir", c])
    assert [b_.path for b_ in batches] == [a, b, c]
    assert batches[0].sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    assert [b_.rows for b_ in batches] == [2, 3, 1]
