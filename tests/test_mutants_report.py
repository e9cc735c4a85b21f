"""The mutation report's arithmetic (docs/mutants.md) on a hand-made report: scores leave equivalent mutants out,
count timeouts as caught, and a reason applies only to the mutant (the diff) it was written for."""

import json

import pytest

from sparseclip.experiments.mutants import BY_NAME, _function, mutants_survivors, mutants_table, scores


def _report():
    diff = ["-    x = a", "+    x = b"]
    return {"tool": "mutmut 3.8.1", "command": "make mutants",
            "groups": {"eval": {"sources": ["src/sparseclip/eval/l0.py"], "total": 10, "before": {"killed": 5},
                                "counts": {"killed": 6, "timeout": 1, "survived": 2, "no tests": 1},
                                "survivors": [{"name": "sparseclip.eval.l0.x_f__mutmut_1", "status": "survived",
                                               "diff": diff},
                                              {"name": "sparseclip.eval.l0.x_f__mutmut_2", "status": "survived",
                                               "diff": diff},
                                              {"name": "sparseclip.eval.l0.xǁCǁg__mutmut_1", "status": "no tests",
                                               "diff": ["-a|b", "+`c`"]}]}}}


def test_scores_leave_equivalent_mutants_out_and_count_timeouts():
    reasons = {"sparseclip.eval.l0.x_f__mutmut_1": {"kind": "equivalent", "why": "same", "diff":
                                                    ["-    x = a", "+    x = b"]},
               "sparseclip.eval.l0.x_f__mutmut_2": {"kind": "harmless", "why": "unreachable", "diff": ["-old"]}}
    s = scores(_report(), reasons)
    # caught: 6 killed + 1 timeout; one equivalent left out of 10; mutant 2's reason is for another diff
    assert s["eval"] == {"total": 10, "caught": 7, "equivalent": 1, "harmless": 0, "unexplained": 2,
                         "not checked": 0, "score": pytest.approx(7 / 9)}
    assert s["all"]["score"] == pytest.approx(7 / 9)


def test_the_generated_tables(tmp_path):
    (tmp_path / "docs" / "mutants").mkdir(parents=True)
    (tmp_path / "docs" / "mutants" / "report.json").write_text(json.dumps(_report()))
    table = mutants_table(tmp_path, ["docs/mutants/report.json"])
    assert "| eval | l0 | 10 | 5 | 7 | 0 | 0 | 3 | 0 | 70.0% |" in table
    assert "| all | all above | 10 | 5 | 7 | 0 | 0 | 3 | 0 | 70.0% |" in table
    rows = mutants_survivors(tmp_path, ["docs/mutants/report.json"]).splitlines()
    assert rows[0] == "**eval** (3 not caught)"
    assert rows[-1] == ("| `eval.l0.x.C.g__mutmut_1` | `- a\\|b / + 'c'` | unexplained | no reason recorded for this "
                        "mutant |")


def test_mutant_names_map_to_functions_in_scope():
    assert _function("x_score_answers__mutmut_3") == "score_answers"
    assert _function("xǁTextJudgeǁclassify__mutmut_12") == "TextJudge.classify"
    steer = BY_NAME["steer"]
    assert steer.counts("sparseclip.steer.bench.x_score_answers__mutmut_3")
    assert not steer.counts("sparseclip.steer.bench.x_run_benchmark__mutmut_3")
    assert steer.counts("sparseclip.steer.judge.x__minilm__mutmut_1")  # a file without a list counts whole


def test_mutants_not_run_count_as_not_caught_and_are_not_listed(tmp_path):
    report = _report()
    report["groups"]["eval"]["survivors"].append({"name": "sparseclip.eval.l0.x_h__mutmut_1", "status": "not checked",
                                                   "diff": []})
    report["groups"]["eval"]["total"] = 11
    s = scores(report, {})
    assert (s["eval"]["not checked"], s["eval"]["unexplained"], s["eval"]["score"]) == (1, 3, pytest.approx(7 / 11))
    (tmp_path / "r.json").write_text(json.dumps(report))
    assert mutants_survivors(tmp_path, ["r.json"]).splitlines()[0] == "**eval** (3 not caught; 1 not run)"


def test_untested_lists_only_the_groups_not_checked_mutants_in_scope(tmp_path, monkeypatch):
    """``--survivors`` also tests the mutants a scratch folder has no result for: those 'not checked' and in the
    group's scope (the steer group counts only some functions of bench.py), none when no scratch folder exists."""
    import sparseclip.experiments.mutants as m

    monkeypatch.setattr(m, "ROOT", tmp_path)
    steer = BY_NAME["steer"]
    assert m._untested(steer) == set()  # no scratch folder yet
    (tmp_path / "build" / "mutmut" / "steer" / "mutants").mkdir(parents=True)
    statuses = {"sparseclip.steer.bench.x_pool_seeds__mutmut_1": "not checked",   # in scope, no result: listed
                "sparseclip.steer.bench.x_pool_seeds__mutmut_2": "killed",        # has a result
                "sparseclip.steer.bench.x_load_items__mutmut_1": "not checked",   # bench.py outside the scope
                "sparseclip.steer.judge.x_judge__mutmut_7": "not checked"}        # judge.py counts whole
    monkeypatch.setattr(m, "_statuses", lambda scratch: statuses)
    assert m._untested(steer) == {"sparseclip.steer.bench.x_pool_seeds__mutmut_1",
                                  "sparseclip.steer.judge.x_judge__mutmut_7"}
