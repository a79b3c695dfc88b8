"""The merflow console script, run as a user runs it (a real subprocess for --help)."""

import subprocess
import sys
import zipfile

import pytest

from merflow.flows.cli import build_parser, main


def test_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "merflow.flows.cli", "--help"], capture_output=True, text=True,
                            check=True)
    for command in ("synth", "ingest", "catalog", "features", "show", "train", "tune", "results", "demo"):
        assert command in result.stdout
    ingest_help = build_parser().parse_args(["ingest", "x", "--out", "y"])
    assert ingest_help.dataset is None and ingest_help.max_ratio == 100.0


def test_synth_then_catalog_summary(tmp_path, capsys):
    assert main(["synth", "--dataset", "casme2sq", "--out", str(tmp_path), "--subjects", "2",
                 "--samples-per-subject", "2", "--scale", "0.2", "--archive", "tar.gz"]) == 0
    assert (tmp_path / "CASME_sq.tar.gz").is_file()
    assert "wrote" in capsys.readouterr().out


def test_errors_are_one_clear_line_and_exit_2(tmp_path, capsys):
    assert main(["catalog", str(tmp_path / "missing")]) == 0  # an empty catalog is a valid answer
    assert main(["synth", "--dataset", "ckplus", "--out", str(tmp_path), "--scale", "5"]) == 2
    assert "scale must be within" in capsys.readouterr().out


@pytest.mark.usefixtures("prefect_backend")
def test_ingest_refuses_a_hostile_archive_with_exit_2(tmp_path, capsys):
    evil = tmp_path / "evil.tar"
    with zipfile.ZipFile(evil, "w") as bundle:  # a zip named .tar: the kind comes from the content
        bundle.writestr("/etc/evil.conf", "x")
    assert main(["ingest", str(evil), "--out", str(tmp_path / "catalog")]) == 2
    assert "/etc/evil.conf" in capsys.readouterr().out
