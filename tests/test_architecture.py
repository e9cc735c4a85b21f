"""The rules docs/architecture.md states, each checked on the source: the library never imports the apps, no
kind name is compared outside its registry, one definition of L0, one registration style."""

import ast
import re
from pathlib import Path

import pytest

import sparseclip
from sparseclip.registry import Registry

SRC = Path(sparseclip.__file__).parent
#: the applications: the trainer, the experiments and the command line
APPS = ("train", "experiments", "cli")
#: the library: everything a user imports to build on
LIBRARY = ("model", "data", "eval", "interpret", "sae", "steer", "index", "report", "files", "config", "loss",
           "registry")


def _modules(*tops: str) -> list[Path]:
    out = []
    for top in tops:
        p = SRC / top
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p.with_suffix(".py")]
    return out


def _imports(path: Path, root: Path = SRC) -> set[str]:
    """The absolute names of the sparseclip modules ``path`` (below the package folder ``root``) imports, relative
    imports resolved."""
    pkg = ["sparseclip", *path.relative_to(root).parts[:-1]]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sparseclip")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                found |= {mod} | {f"{mod}.{a.name}" for a in node.names}
            elif (node.module or "").startswith("sparseclip"):
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_library_never_imports_the_apps():
    bad = []
    for path in _modules(*LIBRARY):
        for name in _imports(path):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] in APPS:
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, bad


def test_the_import_check_sees_relative_imports(tmp_path):
    # the check itself can fail: a library module importing the trainer is caught
    root = tmp_path / "sparseclip"
    (root / "model").mkdir(parents=True)
    probe = root / "model" / "probe.py"
    probe.write_text("from ..train.loop import train\nfrom . import heads\n")
    assert {"sparseclip.train.loop", "sparseclip.model.heads"} <= _imports(probe, root)


def _registries() -> dict[str, Registry]:
    from sparseclip.data.sources import DATA_FORMATS
    from sparseclip.index.backends import BACKENDS
    from sparseclip.model.heads import HEADS
    from sparseclip.model.pretrained import TOWER_PAIRS
    from sparseclip.report.generated import GENERATORS
    from sparseclip.sae.kinds import SAE_KINDS
    from sparseclip.steer.methods import STEER_METHODS

    return {"head kind": HEADS, "data format": DATA_FORMATS, "SAE kind": SAE_KINDS, "tower pair": TOWER_PAIRS,
            "search backend": BACKENDS, "steering method": STEER_METHODS, "doc generator": GENERATORS}


def test_every_kind_is_a_registry_entry():
    regs = _registries()
    assert all(isinstance(r, Registry) and len(r) for r in regs.values())
    assert set(regs["head kind"].names()) >= {"relu", "dense", "linear_wide", "topk"}
    assert set(regs["SAE kind"].names()) == {"relu", "topk", "batchtopk", "matryoshka"}


#: what the compared value is called when it selects a kind
_SELECTOR = re.compile(r"kind|backend|towers|engine|fmt|format|method")
#: comparisons with a registered name that are not about that registry (the word is shared), with the reason
ALLOWED = {
    ("interpret/pipeline.py", "lite"): "the clarity reference encoder's choice (auto / lite / dense / self)",
    ("interpret/pipeline.py", "dense"): "the clarity reference encoder's choice (auto / lite / dense / self)",
    ("experiments/ablate_summary.py", "relu"): "the paper's claims name these kinds: picks their cells in results",
    ("experiments/ablate_summary.py", "linear_wide"): "the paper's claims name these kinds: picks their cells",
    ("data/emoji.py", "csv"): "the emoji importer's output layout (what it writes), not a data format it reads",
    ("data/emoji.py", "wds"): "the emoji importer's output layout (what it writes), not a data format it reads",
}


def _kind_comparisons(path: Path, names: set[str]) -> list[tuple[int, str, str]]:
    """(line, compared expression, name) of each ``x == "name"`` / ``x in ("name", ...)`` where ``x`` looks like a
    kind selector and ``name`` is a registered kind name."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1:
            continue
        if not isinstance(node.ops[0], ast.Eq | ast.NotEq | ast.In | ast.NotIn):
            continue
        left, right = node.left, node.comparators[0]
        for expr, other in ((left, right), (right, left)):
            consts = [other] if isinstance(other, ast.Constant) else \
                list(other.elts) if isinstance(other, ast.Tuple | ast.List | ast.Set) else []
            hits = [c.value for c in consts if isinstance(c, ast.Constant) and c.value in names]
            src = ast.unparse(expr)
            if hits and _SELECTOR.search(src):
                out += [(node.lineno, src, h) for h in hits]
    return out


def test_no_kind_name_is_compared_outside_its_registry():
    names = {n for r in _registries().values() for n in r.names()}
    bad = []
    for path in _modules(*LIBRARY, *APPS):
        rel = str(path.relative_to(SRC))
        for line, src, name in _kind_comparisons(path, names):
            if (rel, name) not in ALLOWED:
                bad.append(f"{rel}:{line}: {src} compared with {name!r}")
    assert not bad, "ask the registry entry instead:\n" + "\n".join(bad)


def test_the_kind_check_can_fail(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('def f(cfg):\n    if cfg.model.head.kind == "topk":\n        return 1\n'
                 '    return cfg.data.kind in ("csv", "wds")\n')
    found = _kind_comparisons(p, {"topk", "csv", "wds"})
    assert [(line, name) for line, _, name in found] == [(2, "topk"), (4, "csv"), (4, "wds")]


#: L0 written out as "count the non-zeros of each row" (the one definition lives in eval.sparsity)
_L0_INLINE = re.compile(r"(>|!=)\s*(0|0\.0|tau|eps)\)\s*\.sum\(\s*(1|-1|axis=1|axis=-1|dim=1|dim=-1)\s*\)"
                        r"|count_nonzero\([^)]*axis=1")


@pytest.mark.parametrize("rule", ["L0"])
def test_one_definition_of_l0(rule):
    bad = [f"{p.relative_to(SRC)}:{i}" for p in _modules(*LIBRARY, *APPS) if p.name != "sparsity.py"
           for i, line in enumerate(p.read_text().splitlines(), 1) if _L0_INLINE.search(line)]
    assert not bad, "count through sparseclip.eval.sparsity (l0, sparsity_stats):\n" + "\n".join(bad)
    defs = [p.relative_to(SRC) for p in _modules(*LIBRARY, *APPS)
            if re.search(r"^def l0\(", p.read_text(), re.M)]
    assert [str(d) for d in defs] == ["eval/sparsity.py"]
    assert _L0_INLINE.search("n = (codes > 0).sum(1).mean()")  # the pattern itself catches the inline form


def test_the_architecture_doc_lists_the_registered_generators():
    from sparseclip.experiments import doc_blocks  # registers the experiments' generators
    from sparseclip.report import generated

    doc_blocks.load_providers()  # and those of the modules it lists (PROVIDERS), as the docs check does
    every = set(generated.GENERATORS.names())
    lib = {n for n, fn in generated.GENERATORS.items() if not fn.__module__.startswith("sparseclip.experiments")}
    text = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    para = text[text.index("- Shipped generators"):]
    para = para[:para.index("\n\n") if "\n\n" in para else len(para)]
    exp_part, lib_part = para.split("(experiments)")
    assert set(re.findall(r"`([a-z][a-z0-9_-]*)`", exp_part.split("against it):")[1])) == every - lib
    assert set(re.findall(r"`([a-z][a-z0-9_-]*)`", lib_part)) == lib
