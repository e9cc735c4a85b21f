"""The steering benchmark (the paper's ImageNet protocol, on the procedural world).

For each one-object validation image: suppress its true concept (its colour, or its shape) and boost another
one (chosen deterministically), ask the VLM, and score the answer. Each steering method of :mod:`.methods`
(text-word, evidence and effect-ranked features, the sparse-cleaned difference of means on a Sparse CLIP; the
text and mean-code differences on a dense CLIP) is swept over its settings (K features x strength).

Every answer is scored (per image, then as rates per concept kind):

- ``success``: names the target, no longer names the source (whole words; :mod:`.scoring`), and is well formed;
- ``judge_success``: an independent judge, a separate sentence-embedding model's zero-shot reading of the answer
  text (:class:`.judge.TextJudge`), classes a well-formed answer as the target;
- ``ill_formed``: not something training produced (the world's grammar; the tiny LM rarely fails this);
- ``unfaithful``: contradicts the image's ground truth in an attribute that was not steered (caption question:
  any named colour/shape, size, position, background or count; attribute question: the answer to the *other*
  attribute question asked of the same edited code must be the true value);
- ``corrupt``: ill-formed or unfaithful;
- ``side_effect``: a non-steered attribute changed or dropped relative to the unedited answer for the same image
  and question (attribute question: the other attribute's answer changed);
- ``zeroshot_target``: CLIP zero-shot of the edited codes themselves (not independent: it reads the edited
  features).

The setting is chosen on a *select* split (highest success with corruption <= the unedited corruption plus the
budget) and reported on a disjoint *test* split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..data.tasks import TASK_SPECS, hash_seed
from ..data.world import World
from ..model.embed import encode_images
from .interventions import FeatureReference, class_embeddings, steered_zero_shot
from .judge import ATTRIBUTE_VALUES, TextJudge, attributes, side_effects, unfaithful
from .methods import ATTRIBUTE_QUESTION, STEER_METHODS, ConceptEvidence, MethodEdits, evidence_split
from .methods import KINDS as VALUES
from .scoring import names, well_formed
from .text import QUESTIONS
from .vlm import AdapterVLM

OTHER = {"color": "shape", "shape": "color"}
METRICS = ("success", "judge_success", "ill_formed", "unfaithful", "corrupt", "side_effect", "clean_success",
           "names_source")


@dataclass
class BenchConfig:
    """What the sweep covers."""

    n_images: int = 100  # per split and concept kind
    ks: tuple[int, ...] = (1, 2, 4, 8)
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # x the feature's reference percentile
    dense_strengths: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)  # x the mean image-code norm
    kinds: tuple[str, ...] = ("color", "shape")
    percentile: float = 99.0
    n_reference: int = 1000
    n_evidence: int = 1000  # labelled one-object images of the evidence split (features by evidence / effect)
    max_corruption: float = 0.05  # chosen settings: select corruption <= the unedited one + this
    max_side_effects: float = 0.2  # second choice reported: select side effects <= this
    max_new_tokens: int = 40
    seed: int = 1


@dataclass
class Item:
    index: int
    kind: str
    source: str
    target: str
    truth: dict[str, str] = field(default_factory=dict)  # attribute kind -> the image's true value


def split_items(kind: str, split: str, n: int, seed: int, image_size: int):
    """``n`` one-object scenes of a split with (source = true value, target = another value), and images."""
    world = World(seed=hash_seed(seed, f"steer-{split}-{kind}"), image_size=image_size, max_objects=1)
    values = VALUES[kind]
    items, images = [], []
    for i in range(n):
        scene = world.scene(i)
        o = scene.objects[0]
        src = getattr(o, kind)
        j = values.index(src)
        tgt = values[(j + 1 + i % (len(values) - 1)) % len(values)]
        truth = {"color": o.color, "shape": o.shape, "size": o.size, "position": o.position,
                 "background": scene.background, "count": "one"}
        items.append(Item(i, kind, src, tgt, truth))
        images.append(world.render(scene, i))
    return items, images


def score_answers(question: str, answers: list[str], before: list[str], items: list[Item], judge: TextJudge,
                  cross: list[str] | None = None, cross_before: list[str] | None = None) -> dict:
    """Rates of :data:`METRICS` over ``answers`` (one per item) to ``question``; ``before``: the unedited
    answers to the same question. ``cross``/``cross_before``: for an attribute question, the (edited /
    unedited) answers to the other attribute's question, which carry unfaithfulness and side effects."""
    if not items:
        raise ValueError("no answers to score")
    kind = items[0].kind
    judged = judge.classify(answers, kind)
    rows, effect_kinds, wrong_kinds = [], {k: 0 for k in ATTRIBUTE_VALUES}, {k: 0 for k in ATTRIBUTE_VALUES}
    for i, (a, it) in enumerate(zip(answers, items, strict=True)):
        ill = not well_formed(a, question)
        success = names(a, it.target) and not names(a, it.source) and not ill
        if cross is None:
            wrong_in = unfaithful(a, it.truth, kind)
            effects = side_effects(before[i], a, kind)
        else:
            other = OTHER[kind]
            wrong_in = [other] if attributes(cross[i])[other] != {it.truth[other]} else []
            effects = [other] if attributes(cross[i])[other] != attributes(cross_before[i])[other] else []
        wrong = bool(wrong_in)
        for k in effects:
            effect_kinds[k] += 1
        for k in wrong_in:
            wrong_kinds[k] += 1
        rows.append({"success": success, "judge_success": judged[i] == it.target and not ill, "ill_formed": ill,
                     "unfaithful": wrong, "corrupt": ill or wrong, "side_effect": bool(effects),
                     "clean_success": success and not (ill or wrong), "names_source": names(a, it.source)})
    n = len(rows)
    out: dict = {m: sum(r[m] for r in rows) / n for m in METRICS}
    out["judge_agrees"] = sum(r["success"] == r["judge_success"] for r in rows) / n
    out["n"] = n
    out["side_effect_kinds"] = {k: v for k, v in effect_kinds.items() if v}
    out["unfaithful_kinds"] = {k: v for k, v in wrong_kinds.items() if v}
    return out


class _Split:
    """A split's images, codes and unedited answers, grouped by concept kind."""

    def __init__(self, model, tokenizer, image_size: int, name: str, cfg: BenchConfig):
        self.name = name
        self.items: dict[str, list[Item]] = {}
        self.codes: dict[str, torch.Tensor] = {}
        self.before: dict[str, dict[str, list[str]]] = {}
        self.weights = {k: class_embeddings(model, tokenizer, *TASK_SPECS[k]) for k in cfg.kinds}
        for kind in cfg.kinds:
            items, images = split_items(kind, name, cfg.n_images, cfg.seed, image_size)
            self.items[kind] = items
            self.codes[kind] = encode_images(model, images, image_size)


def _answers(vlm: AdapterVLM, codes: torch.Tensor, kind: str, max_new_tokens: int) -> dict[str, list[str]]:
    return {"caption": vlm.generate(codes, QUESTIONS["caption"], max_new_tokens),
            "attribute": vlm.generate(codes, ATTRIBUTE_QUESTION[kind], max_new_tokens),
            "cross": vlm.generate(codes, ATTRIBUTE_QUESTION[OTHER[kind]], max_new_tokens)}


def _evaluate(vlm: AdapterVLM, model, tokenizer, split: _Split, edit: Callable[[torch.Tensor, Item], torch.Tensor],
              judge: TextJudge, max_new_tokens: int = 40) -> dict:
    """Answers to the questions for every item after ``edit``; the scores, per kind and overall (``all``: the
    mean over kinds, which have equal n)."""
    out: dict = {}
    for kind, items in split.items.items():
        codes = torch.stack([edit(split.codes[kind][i], it) for i, it in enumerate(items)])
        ans = _answers(vlm, codes, kind, max_new_tokens)
        before = split.before.setdefault(kind, ans)  # the first evaluation of a split is the unedited one
        res: dict = {
            "caption": score_answers(QUESTIONS["caption"], ans["caption"], before["caption"], items, judge),
            "attribute": score_answers(ATTRIBUTE_QUESTION[kind], ans["attribute"], before["attribute"], items,
                                       judge, cross=ans["cross"], cross_before=before["cross"])}
        classnames, templates = TASK_SPECS[kind]
        pred = steered_zero_shot(model, tokenizer, codes, classnames, templates, weights=split.weights[kind])
        res["zeroshot_target"] = sum(classnames[p] == it.target for p, it in zip(pred.tolist(), items,
                                                                                  strict=True)) / len(items)
        res["examples"] = {q: ans[q][:3] for q in ("caption", "attribute")}
        out[kind] = res
    kinds = list(split.items)
    total: dict = {}
    for q in ("caption", "attribute"):
        total[q] = {m: sum(out[k][q][m] for k in kinds) / len(kinds) for m in (*METRICS, "judge_agrees")}
        total[q]["n"] = sum(out[k][q]["n"] for k in kinds)
        for counts in ("side_effect_kinds", "unfaithful_kinds"):
            total[q][counts] = {}
            for k in kinds:
                for a, c in out[k][q][counts].items():
                    total[q][counts][a] = total[q][counts].get(a, 0) + c
    total["zeroshot_target"] = {"rate": sum(out[k]["zeroshot_target"] for k in kinds) / len(kinds),
                                "n": total["caption"]["n"]}
    out["all"] = total
    return out


def judge_calibration(judge: TextJudge, cfg: BenchConfig, image_size: int) -> dict:
    """The judge's accuracy on the true captions and true attribute words of the test split's images (it must
    read correct answers correctly for its verdicts on steered ones to mean anything)."""
    out = {"judge": judge.name}
    for kind in cfg.kinds:
        world = World(seed=hash_seed(cfg.seed, f"steer-test-{kind}"), image_size=image_size, max_objects=1)
        scenes = [world.scene(i) for i in range(cfg.n_images)]
        truth = [getattr(s.objects[0], kind) for s in scenes]
        for name, texts in (("caption", [s.caption for s in scenes]), ("word", truth)):
            pred = judge.classify(texts, kind)
            out[f"{kind}/{name}"] = {"accuracy": sum(p == t for p, t in zip(pred, truth, strict=True)) / len(truth),
                                     "n": len(truth)}
    return out


def run_benchmark(vlm: AdapterVLM, model, tokenizer, image_size: int, cfg: BenchConfig, methods: Sequence[str],
                  reference_codes: torch.Tensor, log: Callable[[str], None] | None = None,
                  judge: TextJudge | None = None) -> list[dict]:
    """Sweep each of ``methods`` (:mod:`.methods`) on one (model, VLM) pair over both splits: one result per
    method (rows of scores per setting, the unedited row first and shared)."""
    judge = judge or TextJudge()
    reference = FeatureReference(reference_codes, cfg.percentile)
    codes, labels, names = evidence_split(model, image_size, cfg.n_evidence, cfg.seed)
    edits = MethodEdits(model, tokenizer, ConceptEvidence.of(codes, labels, names), reference, vlm, max(cfg.ks))
    splits = [_Split(model, tokenizer, image_size, name, cfg) for name in ("select", "test")]
    base = {s.name: _evaluate(vlm, model, tokenizer, s, lambda c, it: c, judge, cfg.max_new_tokens) for s in splits}
    calibration = judge_calibration(judge, cfg, image_size)
    out = []
    for method in methods:
        rows = [{"method": method, "k": 0, "strength": 0.0, **{s: base[s]["all"] for s in base}, "detail": base}]
        for k, strength in edits.settings(method, cfg.ks, cfg.strengths, cfg.dense_strengths):
            edit = edits.edit(method, k, strength)
            res = {s.name: _evaluate(vlm, model, tokenizer, s, edit, judge, cfg.max_new_tokens) for s in splits}
            rows.append({"method": method, "k": k, "strength": strength, **{s: res[s]["all"] for s in res},
                         "detail": res})
            if log:
                t = res["test"]["all"]["caption"]
                log(f"{method} k={k} strength={strength}: caption success {t['success']:.2f} "
                    f"(judge {t['judge_success']:.2f}) corrupt {t['corrupt']:.2f} side effects "
                    f"{t['side_effect']:.2f}")
        feats = None
        if STEER_METHODS.get(method).named_features:
            feats = {f"{kind}:{v}": {role: edits.features(method, kind, v, role)[:max(cfg.ks)]
                                     for role in ("boost", "suppress")}
                     for kind, values in VALUES.items() if kind in cfg.kinds for v in values}
        out.append({"method": method, "config": asdict(cfg), "rows": rows, "judge": calibration, "features": feats,
                    "code_width": int(codes.shape[1])})
    return out


def _pool(values: list):
    """One value from the same field of several seeds' results: rates (floats) averaged, counts (ints: n, the
    side-effect and unfaithfulness tallies) summed, dicts field by field, anything else (answer examples) the
    first seed's."""
    first = values[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for v in values for k in v))  # tallies may name a kind in one seed only
        return {k: _pool([v[k] for v in values if k in v]) for k in keys}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    if isinstance(first, int):
        return sum(values)
    return sum(values) / len(values)


def pool_seeds(per_seed: Sequence[Sequence[dict]]) -> list[dict]:
    """Results of the same methods and settings measured with several VLM seeds (one list per seed, in the same
    order) as one result per method: each row's rates averaged over the seeds (n: the answers of all seeds),
    the seeds' own ``select``/``test`` rates kept under ``seeds``, and ``n_seeds`` set."""
    if not per_seed:
        raise ValueError("no results to pool")
    out = []
    for results in zip(*per_seed, strict=True):
        first = results[0]
        rows = []
        for rs in zip(*(r["rows"] for r in results), strict=True):
            if len({(r["method"], r["k"], r["strength"]) for r in rs}) != 1:
                raise ValueError("the seeds' sweeps differ in their settings")
            row = {key: rs[0][key] for key in ("method", "k", "strength")}
            for part in ("select", "test", "detail"):
                row[part] = _pool([r[part] for r in rs])
            row["seeds"] = [{"select": r["select"], "test": r["test"]} for r in rs]
            rows.append(row)
        out.append({**first, "rows": rows, "n_seeds": len(results)})
    return out
