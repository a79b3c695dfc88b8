"""tasks/matlab.py: MAT-file variables and MCOS objects (a categorical, a network's layers), on files written
byte by byte here (tests/mat_files.py) and on the survey's own (../shared/reference/survey)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import scipy.io
from mat_files import write_categorical, write_survey_images

from merflow.tasks import matlab


def test_a_categorical_reads_its_categories_and_codes(tmp_path):
    path = write_categorical(tmp_path / "labels.mat", ["Other", "negative", "positive", "surprise"], [1, 2, 0, 4, 3, 3])
    labels = matlab.read_categorical(path)
    assert labels.variable == "qutrain_label" and labels.categories == ("Other", "negative", "positive", "surprise")
    assert labels.codes.tolist() == [1, 2, 0, 4, 3, 3]
    assert labels.labels == ["Other", "negative", None, "surprise", "positive", "positive"]  # 0 is <undefined>
    # scipy sees only an opaque workspace: the reason this reader exists.
    assert "qutrain_label" not in scipy.io.loadmat(str(path))
    variable = matlab.read_mat(path)["qutrain_label"]
    assert isinstance(variable, matlab.MatlabObject) and variable.class_name == "categorical"
    assert variable.properties["isOrdinal"].ravel().tolist() == [0]  # a class default, not stored with the object


def test_numeric_variables_keep_matlab_shape_and_class(tmp_path):
    images = np.arange(4 * 4 * 3 * 2, dtype=np.uint8).reshape(4, 4, 3, 2)
    path = write_survey_images(tmp_path / "C.mat", images)
    read = matlab.read_mat(path)["qutrain_C"]
    assert read.dtype == np.uint8 and np.array_equal(read, images)


def test_what_is_not_a_categorical_file_is_one_clear_error(tmp_path):
    images = write_survey_images(tmp_path / "C.mat", np.zeros((2, 2, 3, 1), np.uint8))
    with pytest.raises(matlab.MatFileError, match=r"holds 0 categorical variables \(it holds qutrain_C"):
        matlab.read_categorical(images)
    text = tmp_path / "notes.mat"
    text.write_text("not a MAT-file at all")
    with pytest.raises(matlab.MatFileError, match="is not a MATLAB 5 MAT-file"):
        matlab.read_mat(text)
    truncated = tmp_path / "cut.mat"
    truncated.write_bytes(write_categorical(tmp_path / "whole.mat", ["a"], [1]).read_bytes()[:300])
    with pytest.raises(matlab.MatFileError, match="past its end of 300 bytes"):
        matlab.read_mat(truncated)


@pytest.mark.parametrize("name, count, per_class, first", [("label4.mat", 4, 112, "Other"),
                                                           ("label9.mat", 9, 16, "anger")])
def test_the_survey_label_files(reference, name, count, per_class, first):
    labels = matlab.read_categorical(reference / "survey" / name)
    assert len(labels.categories) == count and labels.categories[0].rstrip("\0") == first
    assert set(Counter(labels.labels).values()) == {per_class} and len(labels.codes) == count * per_class
    if name == "label9.mat":  # apex9.m's names come from a NUL-padded char matrix, stored so
        assert labels.categories[0] == "anger" + "\0" * 5


def test_the_survey_images_read_as_scipy_reads_them(reference):
    mine = matlab.read_mat(reference / "survey" / "C9.mat")["qutrain_C"]
    theirs = scipy.io.loadmat(str(reference / "survey" / "C9.mat"))["qutrain_C"]
    assert mine.shape == (28, 28, 3, 144) and mine.dtype == np.float64  # MATLAB's class: double, stored as uint8
    assert np.array_equal(mine, theirs)


def test_the_network_layers_are_structs_of_its_objects(reference):
    net = matlab.read_mat(reference / "survey" / "net4.mat")["net"]
    assert isinstance(net, matlab.MatlabObject) and net.class_name == "nnet.cnn.LayerGraph"
    names = [s["Name"] for s in matlab.structs(reference / "survey" / "net4.mat") if "Name" in s]
    assert names[0] == "imageinput" and names[-1] == "classoutput" and len(names) == 10
