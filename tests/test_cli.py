"""The command line: the README's data commands end to end, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from taskadapt.cli import main


def _scenes(tmp_path, *extra):
    out = tmp_path / "scenes"
    code = main(["data", "make-scenes", "--out", str(out), "--train", "3", "--val", "2", "--test", "2",
                 "--size", "32", *extra])
    return code, out


def test_make_scenes_then_check_passes(tmp_path, capsys):
    code, out = _scenes(tmp_path)
    assert code == 0
    assert (out / "gt_sets" / "train.txt").read_text().split() == [f"train_{i:06d}" for i in range(3)]
    assert (out / "contact_sheet.png").is_file()
    capsys.readouterr()
    assert main(["data", "check", str(out), "--format", "nyud"]) == 0
    printed = capsys.readouterr().out
    assert "ok" in printed and "train" in printed and "test" in printed
    assert main(["data", "check", str(out), "--format", "scenes", "--split", "val"]) == 0
    assert "val" in capsys.readouterr().out


def test_check_catches_a_broken_scene_folder(tmp_path, capsys):
    code, out = _scenes(tmp_path)
    assert code == 0
    depth_file = out / "depth" / "val_000001.npy"
    depth_file.unlink()
    normals = np.load(out / "normals" / "train_000000.npy")
    np.save(out / "normals" / "train_000000.npy", normals * 3.0)  # no longer unit vectors
    capsys.readouterr()
    assert main(["data", "check", str(out), "--format", "nyud"]) == 1
    printed = capsys.readouterr().out
    assert "val_000001" in printed
    assert "train_000000" in printed


def test_make_scenes_refuses_to_overwrite(tmp_path, capsys):
    code, out = _scenes(tmp_path)
    assert code == 0
    before = (out / "images" / "train_000000.png").read_bytes()
    capsys.readouterr()
    code, _ = _scenes(tmp_path, "--seed", "1")
    assert code == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err
    assert (out / "images" / "train_000000.png").read_bytes() == before
    code, _ = _scenes(tmp_path, "--seed", "1", "--overwrite")
    assert code == 0
    assert (out / "images" / "train_000000.png").read_bytes() != before


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["data", "make-scenes", "--out", "{tmp}/x", "--domain", "studoi"], "did you mean 'studio'"),
        (["data", "check", "{tmp}", "--format", "nyu"], "did you mean 'nyud'"),
        (["data", "check", "{tmp}/missing", "--format", "nyud"], "missing"),
        (["config", "show", "data.tasks=[smeseg]"], "did you mean 'semseg'"),
        (["config", "show", "{tmp}/none.yaml"], "does not exist"),
        (["data", "make-scenes", "--out", "{tmp}/file.txt/x", "--train", "1"], "Not a directory"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, argv, needle):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert err.startswith("error:") and "\n" not in err


def test_info_lists_registries(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("semseg", "nyud", "pascal", "studio", "toon", "vit_small_patch16_224"):
        assert name in out


def test_config_show_prints_resolved_yaml(capsys):
    assert main(["config", "show", "data.batch_size=3"]) == 0
    assert "batch_size: 3" in capsys.readouterr().out


def test_module_entry_point_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "taskadapt", "config", "show", "data.batch_size=abc"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "data.batch_size" in proc.stderr and "expected int" in proc.stderr
    assert "Traceback" not in proc.stderr
