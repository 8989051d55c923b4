"""Packaging: the wheel carries the workflow and works without the checkout; metadata, environments and versions agree.

The slow test builds the wheel from a copy of the files the package is made of (offline: ``--no-build-isolation``,
which needs setuptools >= 77 in this venv, as ``.ci/run`` installs), installs it with ``--no-deps`` into a folder
(its dependencies are this venv's), and runs the installed ``antrax-pipe`` from an unrelated folder: ``--version``,
``merge-trainset``, ``train`` and ``classify`` of a demo experiment copy, checking that the packaged workflow and
library did the work, not the checkout's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import antrax_pipe
from antrax_pipe import cli

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "antrax_pipe"
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: what a user install must not pull in (developer tools: the `test` extra)
DEV_TOOLS = {"pytest", "snakefmt", "playwright", "black"}


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _files(root: Path) -> set[str]:
    """Files under ``root`` (relative, posix), without bytecode."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


# ----------------------------------------------------------------------------------------------------- fast checks


def test_workflow_snakefile_prefers_env_then_package_then_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTRAX_PIPE_WORKFLOW", raising=False)
    # from the checkout (editable install): the repository's workflow/
    assert cli.workflow_snakefile() == REPO / "workflow" / "Snakefile"

    # an installed package: antrax_pipe/workflow/ inside it wins over a workflow/ folder beside the package
    site = tmp_path / "site"
    for p in (site / "antrax_pipe" / "workflow" / "Snakefile", site / "workflow" / "Snakefile"):
        p.parent.mkdir(parents=True)
        p.write_text("# test\n")
    monkeypatch.setattr(cli, "__file__", str(site / "antrax_pipe" / "cli.py"))
    assert cli.workflow_snakefile() == site / "antrax_pipe" / "workflow" / "Snakefile"
    (site / "antrax_pipe" / "workflow" / "Snakefile").unlink()
    assert cli.workflow_snakefile() == site / "workflow" / "Snakefile"
    (site / "workflow" / "Snakefile").unlink()
    with pytest.raises(SystemExit, match="ANTRAX_PIPE_WORKFLOW"):
        cli.workflow_snakefile()

    # ANTRAX_PIPE_WORKFLOW first: a Snakefile or its folder; set but missing is an error, never a silent fallback
    mine = tmp_path / "mine" / "Snakefile"
    mine.parent.mkdir()
    mine.write_text("# mine\n")
    monkeypatch.setenv("ANTRAX_PIPE_WORKFLOW", str(mine))
    assert cli.workflow_snakefile() == mine
    monkeypatch.setenv("ANTRAX_PIPE_WORKFLOW", str(mine.parent))
    assert cli.workflow_snakefile() == mine
    monkeypatch.setenv("ANTRAX_PIPE_WORKFLOW", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="nowhere"):
        cli.workflow_snakefile()


def test_version_flag_and_versions_agree(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"antrax-pipe {antrax_pipe.__version__}"
    assert PYPROJECT["project"]["version"] == antrax_pipe.__version__


def test_user_install_and_environments_have_no_test_tools():
    project = PYPROJECT["project"]
    assert not {_name(r) for r in project["dependencies"]} & DEV_TOOLS
    assert DEV_TOOLS - {"black"} <= {_name(r) for r in project["optional-dependencies"]["test"]}
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]  # SPDX licence string
    for f in ["environment.yml", "environment-gpu.yml", *sorted((REPO / "workflow" / "envs").glob("*.yaml"))]:
        text = (REPO / f).read_text()
        env = yaml.safe_load(text)
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert not {_name(r) for r in pip} & DEV_TOOLS, f
        assert "tensorflow-cpu" not in text, f"{f}: tensorflow-cpu has no macOS arm64 build and clashes with [gpu]"


def test_workflow_envs_follow_pyproject():
    """workflow/envs/ = pyproject's runtime dependencies without Snakemake (the jobs do not need it), same ranges;
    the GPU env and the `gpu` extra ask for the same CUDA TensorFlow."""
    deps = {_name(r): r for r in PYPROJECT["project"]["dependencies"] if not _name(r).startswith("snakemake")}
    gpu_extra = PYPROJECT["project"]["optional-dependencies"]["gpu"]
    cuda_tf = deps["tensorflow"].replace("tensorflow", "tensorflow[and-cuda]", 1)
    assert [r.split(";")[0].strip() for r in gpu_extra] == [cuda_tf]

    def pip_of(name):
        env = yaml.safe_load((REPO / "workflow" / "envs" / name).read_text())
        return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))

    assert sorted(pip_of("antrax-pipe.yaml")) == sorted(deps.values())
    want_gpu = [cuda_tf if n == "tensorflow" else r for n, r in deps.items()]
    assert sorted(pip_of("antrax-pipe-gpu.yaml")) == sorted(want_gpu)


def test_packaged_scripts_path_entry_is_harmless():
    """Every workflow script puts ``Path(scriptdir).parents[1]`` first on ``sys.path``: the repository root in a
    clone, but ``site-packages/antrax_pipe`` in an installed wheel, whose modules then also answer to their bare
    names. Harmless as long as none of them is named like a standard-library module a job could import later (``io``
    is one, but Python imports it at start-up, so the name is taken before the script runs)."""
    names = {p.stem for p in PKG.glob("*.py")} | {d.name for d in PKG.iterdir() if (d / "__init__.py").is_file()}
    started = subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
                             capture_output=True, text=True, check=True).stdout.split()
    clash = (names & set(sys.stdlib_module_names)) - set(started)
    assert not clash, f"antrax_pipe modules named like standard-library modules: {sorted(clash)}"


# ------------------------------------------------------------------------------------------- the wheel, for real


def _setuptools_version() -> tuple[int, ...]:
    try:
        from importlib.metadata import version

        return tuple(int(x) for x in re.findall(r"\d+", version("setuptools"))[:2])
    except Exception:
        return (0,)


def _copy_sources(dest: Path) -> Path:
    """What the package is built from (the files the Dockerfile copies), nothing else of the checkout."""
    dest.mkdir()
    for f in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(REPO / f, dest / f)
    for d in ("antrax_pipe", "workflow"):
        shutil.copytree(REPO / d, dest / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n"
                                 f"{res.stdout[-3000:]}\n{res.stderr[-6000:]}")
    return res


@pytest.mark.slow
def test_wheel_runs_from_any_folder_without_the_checkout(tmp_path):
    if _setuptools_version() < (77,):
        pytest.skip("setuptools >= 77 needed in this venv to build offline (.ci/run installs it: "
                    "pip install 'setuptools>=77')")
    # build
    src = _copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(dist), "."],
         cwd=src, env=dict(os.environ))
    (wheel,) = dist.glob("antrax_pipe-*.whl")

    # contents: the library (incl. the app's static files), every workflow file, no tests or configs;
    # metadata: the test tools only behind the `test` extra, CUDA TensorFlow behind `gpu`
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {f"antrax_pipe/{f}" for f in _files(PKG)} <= names
    assert {f"antrax_pipe/workflow/{f}" for f in _files(REPO / "workflow")} <= names
    assert "antrax_pipe/workflow/Snakefile" in names and "antrax_pipe/workflow/rules/classify.smk" in names
    assert not [n for n in names if n.startswith(("tests/", "config/", "demo/", "workflow/"))]
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    for r in requires:
        if _name(r) in DEV_TOOLS:
            assert 'extra == "test"' in r, r
    assert any(r.startswith("tensorflow[and-cuda]") and 'extra == "gpu"' in r for r in requires), requires
    assert f"Version: {antrax_pipe.__version__}" in meta and "License-Expression: GPL-3.0-or-later" in meta

    # install without dependencies (this venv's serve) into a folder; run it from elsewhere
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(site),
          str(wheel)], cwd=tmp_path, env=dict(os.environ))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ANTRAX_PIPE_WORKFLOW", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), PYTHONWARNINGS="ignore")
    exe = site / "bin" / "antrax-pipe"

    res = _run([str(exe), "--version"], elsewhere, env)
    assert res.stdout.strip() == f"antrax-pipe {antrax_pipe.__version__}"
    where = _run([sys.executable, "-c", "import antrax_pipe, antrax_pipe.cli as c; "
                  "print(antrax_pipe.__file__); print(c.workflow_snakefile())"], elsewhere, env).stdout.split()
    assert where == [str(site / "antrax_pipe" / "__init__.py"), str(site / "antrax_pipe" / "workflow" / "Snakefile")]
    for verb in ("classify", "train", "merge-trainset", "extract-trainset"):
        _run([sys.executable, "-m", "antrax_pipe.cli", verb, "--help"], elsewhere, env)

    # a demo experiment, a trainset made from it, a tiny classifier, every movie classified
    exps = tmp_path / "experiments"
    shutil.copytree(REPO / "demo" / "experiments" / "colonyA", exps / "colonyA",
                    ignore=shutil.ignore_patterns("autoids_*", "antrax-pipe", "labels", "review_plan.csv",
                                                  "label_next.csv", "validation.csv"))
    clf = tmp_path / "classdir"
    _run([str(exe), "merge-trainset", str(exps / "colonyA"), str(clf), "--allow-new-labels"], elsewhere, env)
    res = _run([str(exe), "train", str(clf), "--scratch", "--ne", "1", "--arch", "small", "--target-size", "32",
                "--workdir", "work-train", "--cores", "2", "--threads", "2", "--", "--quiet"], elsewhere, env)
    packaged = str(site / "antrax_pipe" / "workflow" / "Snakefile")
    assert f"--snakefile {packaged}" in res.stderr
    assert (clf / "classifier.h5").is_file()
    res = _run([str(exe), "classify", str(exps / "colonyA"), "--classifier", str(clf / "classifier.h5"),
                "--workdir", "work-classify", "--cores", "2", "--threads", "2", "--", "--quiet"], elsewhere, env)
    assert f"--snakefile {packaged}" in res.stderr
    labels = exps / "colonyA" / "antrax" / "labels"
    images = (exps / "colonyA" / "antrax" / "images").glob("images_*.mat")
    movies = {re.match(r"images_(\d+)", p.name).group(1) for p in images}
    assert sorted(p.name for p in labels.glob("autoids_*.csv")) == sorted(f"autoids_{m}.csv" for m in movies)
    # the jobs ran the packaged library, and nothing of the checkout
    for prov in sorted((labels / "antrax-pipe").glob("autoids_*.json")):
        text = prov.read_text()
        json.loads(text)
        assert str(site / "antrax_pipe") in text and str(REPO) not in text, prov
    assert not (elsewhere / "config").exists()  # no config/config.yaml needed where the CLI runs
