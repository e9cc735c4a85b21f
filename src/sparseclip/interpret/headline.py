"""The claims an analysis supports, as sentences generated from its verdicts (:mod:`.verdicts`), so that no doc
states an ordering the figures do not show.

For each analysed set: on how many metrics the analysed row beats every SAE at matched L0, the dense head and the
random controls (three separate counts, with the metrics named), which metrics it loses to an SAE on and to which
row, and how alive its dictionary is; where the analysis counted live features, the same count against the SAE rows
matched on L0 AND live features, with the rows matched on L0 only named apart; then whether the paper's ordering
holds (:func:`paper_ordering`: above every SAE at matched L0 on a majority of the metrics, with the dictionary
alive).
"""

from __future__ import annotations

import math

from .verdicts import CONTROL_KINDS, DENSE_ROW, SAE_ROW, sae_match

#: the paper's target for a live dictionary: at most this share of the features dead on the analysed inputs
MAX_DEAD_PCT = 15.0


class HeadlineError(ValueError):
    """A summary the headline cannot be drawn from, in one line."""


def _verdicts(summary: dict, where: str) -> list[dict]:
    vs = summary.get("verdicts") or []
    if not vs:
        raise HeadlineError(f"{where}: no verdicts (run `sparseclip analyze` with its baseline rows)")
    if any("rows" not in v or "beats" not in v for v in vs):
        raise HeadlineError(f"{where}: verdicts written before every metric was compared with every row; re-run "
                            "`sparseclip analyze`")
    return vs


def tally(summary: dict, where: str = "summary") -> dict:
    """Per verdict (``SAE``, ``dense``, ``controls``, and ``SAE_live`` where the analysis counted live features):
    the metrics won, the metrics lost (with the rows they lose or are level with) and the metrics with no such row;
    plus the SAE rows counted (``sae_matched``: at matched L0; of them ``sae_both``: matched on live features too,
    ``sae_l0_only``: not), those not counted, and the model's health."""
    vs = _verdicts(summary, where)
    out: dict = {"metrics": [v["metric"] for v in vs]}
    live = any("SAE_live" in v["beats"] for v in vs)
    for key, kind in (("SAE", SAE_ROW), ("dense", DENSE_ROW), ("controls", None)) + ((("SAE_live", SAE_ROW),)
                                                                                       if live else ()):
        won = [v["metric"] for v in vs if v["beats"].get(key) is True]
        lost = {}
        for v in vs:
            if v["beats"].get(key) is not False:
                continue
            rows = [r for r in v["rows"] if (r["kind"] == kind if kind else r["kind"] in CONTROL_KINDS)
                    and (sae_match(r) == "L0 and live" if key == "SAE_live" else r.get("matched_l0", True))
                    and r["verdict"] != "above"]
            lost[v["metric"]] = [(r["baseline"], r["verdict"]) for r in rows] or [("chance", "level")]
        untested = [v["metric"] for v in vs if v["beats"].get(key) is None]
        out[key] = {"won": won, "lost": lost, "untested": untested}
    saes = {r["baseline"]: sae_match(r) for v in vs for r in v["rows"] if r["kind"] == SAE_ROW}
    model = summary["rows"][0]
    out |= {"model": model.get("model", "?"), "L0_image": model.get("L0_image"), "dead_pct": model.get("dead_pct"),
            "live_features": model.get("live_features"),
            "sae_matched": [n for n, m in saes.items() if m != "none"],
            "sae_unmatched": [n for n, m in saes.items() if m == "none"]}
    if live:
        out |= {"sae_both": [n for n, m in saes.items() if m == "L0 and live"],
                "sae_l0_only": [n for n, m in saes.items() if m == "L0 only"]}
    return out


def paper_ordering(t: dict) -> dict:
    """Whether a tally meets the target: above every SAE at matched L0 on a majority of the metrics compared with
    an SAE, and at most :data:`MAX_DEAD_PCT` per cent of the features dead."""
    tested = len(t["SAE"]["won"]) + len(t["SAE"]["lost"])
    majority = tested > 0 and 2 * len(t["SAE"]["won"]) > tested
    dead = t.get("dead_pct")
    alive = dead is not None and math.isfinite(float(dead)) and float(dead) <= MAX_DEAD_PCT
    return {"won": len(t["SAE"]["won"]), "tested": tested, "majority": majority, "alive": alive}


def _code(x) -> str:
    return f"`{x}`"


def _losses(lost: dict) -> str:
    def rows(pairs: list) -> str:
        return ", ".join(("level with" if v == "level" else v) + f" {n}" if n != "chance" else "not above chance"
                         for n, v in pairs)

    return "; ".join(f"{_code(m)} ({rows(p)})" for m, p in lost.items())


def set_headline(label: str, summary: dict, where: str = "summary") -> str:
    """The sentences for one analysed set (``label``: e.g. ``the world``)."""
    t = tally(summary, where)
    order = paper_ordering(t)
    n = len(t["metrics"])
    dead = t["dead_pct"]
    dead_s = "n/a" if dead is None else f"{float(dead):.1f}%"
    sae_n = len(t["sae_matched"])
    l0 = "n/a" if t["L0_image"] is None else f"{float(t['L0_image']):.1f}"
    text = (f"**On {label}**, the row {_code(t['model'])} (image L0 {_code(l0)}, "
            f"{_code(dead_s)} of its features dead on the analysed inputs) beats every SAE at matched L0 "
            f"({_code(sae_n)} SAE rows) on {_code(order['won'])} of the {_code(order['tested'])} metrics compared "
            f"with them")
    text += f": {', '.join(map(_code, t['SAE']['won']))}." if t["SAE"]["won"] else "."
    if t["SAE"]["lost"]:
        text += f" It does not on {_losses(t['SAE']['lost'])}."
    if t["sae_unmatched"]:
        text += f" Not at its L0, so not counted: {', '.join(t['sae_unmatched'])}."
    if "SAE_live" in t:
        text += _live_sentence(t)
    for key, what in (("dense", "the dense head"), ("controls", "the random controls it must beat")):
        won, lost = t[key]["won"], t[key]["lost"]
        if not won and not lost:
            continue
        text += (f" It beats {what} on {_code(len(won))} of {_code(len(won) + len(lost))}"
                 + (f"; not on {', '.join(map(_code, lost))}" if lost else "") + ".")
    verdict = ("holds" if order["majority"] else "does not hold") + (
        "" if order["alive"] else f", and the dictionary is not alive (more than {MAX_DEAD_PCT:.0f}% dead)")
    text += f" The paper's ordering (above every SAE on a majority of the {_code(n)} metrics) {verdict} here."
    return text


def _live_sentence(t: dict) -> str:
    """The count against the SAE rows matched on L0 and live features, and the rows matched on L0 only."""
    live = t.get("live_features")
    n = f"{_code(live)} live features" if live is not None else "its live features"
    only = (f" Matched on L0 only (their live features are not the model's {n}): "
            f"{', '.join(t['sae_l0_only'])}." if t["sae_l0_only"] else "")
    if not t["sae_both"]:
        return f" No SAE row is matched on its {n} as well as its L0." + only
    won, lost = t["SAE_live"]["won"], t["SAE_live"]["lost"]
    text = (f" At matched L0 and matched live features ({n}; {_code(len(t['sae_both']))} SAE rows: "
            f"{', '.join(t['sae_both'])}) it beats every such SAE on {_code(len(won))} of "
            f"{_code(len(won) + len(lost))}" + (f": {', '.join(map(_code, won))}" if won else "") + ".")
    if lost:
        text += f" Not on {_losses(lost)}."
    return text + only


def headline(sets: list[tuple[str, dict, str]]) -> str:
    """One paragraph per ``(label, summary, where)``, then one line: on which sets the paper's ordering holds. A
    summary written before every metric was compared with every row gets one sentence saying so, and no claim."""
    paras, holds, fails, stale = [], [], [], []
    for label, summary, where in sets:
        try:
            paras.append(set_headline(label, summary, where))
        except HeadlineError as e:
            paras.append(f"**On {label}**: no claim ({e}).")
            stale.append(label)
            continue
        o = paper_ordering(tally(summary, where))
        (holds if o["majority"] and o["alive"] else fails).append(label)
    last = ("The Sparse CLIP features beat the post-hoc SAEs in the paper's sense (a majority of the metrics, "
            "dictionary alive) on " + (", ".join(holds) if holds else "none of these sets")
            + (f"; not on {', '.join(fails)}" if fails else "")
            + (f"; not yet measured on {', '.join(stale)}" if stale else "") + ".")
    return "\n\n".join(paras + [last])
