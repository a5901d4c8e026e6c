import subprocess
import sys

import pytest

from cogumi_ray.cli import main
from cogumi_ray.pipeline import STAGES


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, cogumi_ray.cli as c\n"
        "c.build_parser()\n"
        "heavy = [m for m in ('torch', 'ray', 'transformers', 'pyarrow', 'llama_cpp') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    helped = subprocess.run([sys.executable, "-m", "cogumi_ray.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "demo" in helped.stdout and "pipeline" in helped.stdout


def test_every_stage_has_a_command(capsys):
    for stage in STAGES:
        with pytest.raises(SystemExit) as e:
            main([*stage.command, "--help"])
        assert e.value.code == 0
        assert stage.help.split()[0] in capsys.readouterr().out


def test_bad_set_and_bad_config_exit_2(tmp_path, capsys):
    assert main(["pipeline", "status", "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    bad = tmp_path / "c.yaml"
    bad.write_text("trian: {}\n")
    assert main(["pipeline", "run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "trian" in err and str(bad) in err


def test_unknown_force_stage_is_an_error(tmp_path, capsys):
    rc = main(["pipeline", "run", "configs/demo.yaml", "--root", str(tmp_path), "--force", "nope"])
    assert rc == 2 and "unknown stage 'nope'" in capsys.readouterr().err


def test_status_of_missing_run(tmp_path, capsys):
    assert main(["pipeline", "status", "--root", str(tmp_path)]) == 2
    assert "no run" in capsys.readouterr().err
