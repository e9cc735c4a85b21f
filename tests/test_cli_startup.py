"""The command line starts at once (issue 38): building the parser and every sub-command's ``--help`` import neither
torch nor the model stack (open_clip, torchvision, transformers, scikit-learn), ``import sparseclip`` is cheap, and
the package's lazy names still resolve to the library's objects. Each check runs in a fresh interpreter, where
``sys.modules`` shows what the command imported."""

import json
import subprocess
import sys
from importlib.metadata import version

#: what must not be imported before a sub-command runs: the model stack (seconds of start-up)
HEAVY = ("torch", "open_clip", "transformers", "sklearn", "torchvision")

HELP_PROBE = """
import contextlib, io, json, sys
from sparseclip.cli import build_parser, main

HEAVY = {heavy!r}

def loaded(names):
    return sorted(m for m in names if m in sys.modules)

print(json.dumps(loaded(HEAVY + ("numpy",))), flush=True)  # first: what importing the command line loaded
from sparseclip.cli import commands

def help_of(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main([*argv, "--help"])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue()

cmds = list(commands(build_parser()))
report = {{"built": loaded(HEAVY + ("numpy",)), "help": {{}}}}
# index build last: its help lists the search backends' options, which imports them (numpy, scipy)
for argv in [[], *sorted(cmds, key=lambda c: c == ["index", "build"])]:
    code, text = help_of(argv)
    report["help"][" ".join(argv)] = {{"code": code, "usage": text.startswith("usage: sparseclip"),
                                       "heavy": loaded(HEAVY), "numpy": "numpy" in sys.modules}}
print(json.dumps(report))
"""


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_of_every_command_imports_no_torch():
    done = subprocess.run([sys.executable, "-c", HELP_PROBE.format(heavy=HEAVY)], capture_output=True, text=True,
                          timeout=120)
    imported = json.loads(done.stdout.splitlines()[0]) if done.stdout else None
    assert imported == [], f"importing the command line imported {imported}: {done.stderr[-300:]}"
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[1])
    assert report["built"] == [], "building the parser imported " + ", ".join(report["built"])
    helps = report["help"]
    # every sub-command was found, nested ones too (index build/search/info)
    assert {"", "train", "eval", "analyze", "demo", "steer", "index", "index build", "index search"} <= set(helps)
    for cmd, got in helps.items():
        assert got["code"] == 0 and got["usage"], f"sparseclip {cmd} --help: exit {got['code']}"
        assert got["heavy"] == [], f"sparseclip {cmd} --help imported {', '.join(got['heavy'])}"
    # nor numpy, but for index build (run last), which lists the registered search backends and their options
    assert [cmd for cmd, got in helps.items() if got["numpy"]] == ["index build"]


#: the package's public names and the module each comes from
EXPORTS = {"ChunkedClipLoss": "loss", "ClipLoss": "loss", "Config": "config", "ConfigError": "config",
           "SparseCLIP": "model", "create_model": "model", "get_tokenizer": "model", "load_config": "config",
           "list_pretrained": "weights", "list_pretrained_tags_by_model": "weights",
           "create_model_and_transforms": "weights", "get_pretrained_tokenizer": "weights"}


def test_import_is_cheap_and_the_lazy_names_resolve():
    probe = f"""
import importlib, json, sys
import sparseclip
cheap = sorted(m for m in {HEAVY!r} + ("numpy", "sparseclip.model", "sparseclip.loss") if m in sys.modules)
listed = set(dir(sparseclip)) >= set(sparseclip.__all__) | {{"__version__"}}
version = sparseclip.__version__
from sparseclip import ClipLoss, SparseCLIP, create_model, get_tokenizer, load_config
same = [n for n, m in {EXPORTS!r}.items()
        if getattr(sparseclip, n) is not getattr(importlib.import_module("sparseclip." + m), n)]
try:
    sparseclip.no_such_name
    missing = "no error"
except AttributeError as e:
    missing = str(e)
print(json.dumps({{"cheap": cheap, "listed": listed, "version": version, "differ": same, "missing": missing,
                  "torch_after": "torch" in sys.modules, "all": sorted(sparseclip.__all__)}}))
"""
    got = json.loads(_python(probe))
    assert got["cheap"] == [], "import sparseclip imported " + ", ".join(got["cheap"])
    assert got["listed"] and got["differ"] == [] and got["torch_after"]  # the lazy names are the library's objects
    assert got["version"] == version("sparseclip")
    assert got["all"] == sorted(EXPORTS)
    assert got["missing"] == "module 'sparseclip' has no attribute 'no_such_name'"


def test_version_and_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "sparseclip", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == f"sparseclip {version('sparseclip')}\n", done.stderr
    done = subprocess.run([sys.executable, "-m", "sparseclip", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: sparseclip") and "train" in done.stdout


def test_the_command_line_lets_idle_openmp_threads_sleep_unless_the_user_chose(monkeypatch):
    import os

    from sparseclip.cli import quiet_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    quiet_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's choice stands
    quiet_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_command_runs_with_the_sleeping_wait_policy():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import os; import sparseclip.cli as c; c.main(['index', 'info', '/nonexistent']); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")  # a command that fails in one line still set it first
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "PASSIVE", out.stderr[-500:]
