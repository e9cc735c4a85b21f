"""Nothing lost, nothing silent: each failure found by hostile use of the CLI (issue 13), reproduced and
checked. Signals go to real subprocesses; weights are compared bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparseclip.cli import main

MICRO = ["micro", "train.tensorboard=false", "train.progress=false"]


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sparseclip", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _weights(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def _one_line_error(capsys, code: int, *needles: str) -> str:
    raw = capsys.readouterr().err
    err = [ln for ln in raw.splitlines() if ln.startswith("sparseclip:") and not ln.startswith("sparseclip: note:")]
    assert code == 2 and len(err) == 1 and err[0].startswith("sparseclip: error:") and "Traceback" not in raw, raw
    assert all(n in err[0] for n in needles), err[0]
    return err[0]


def _wait_for_log(run: Path, lines: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    log = run / "log.jsonl"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if log.is_file() and len(log.read_text().splitlines()) >= lines:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the run did not log in time")


def test_sigint_stops_at_a_step_boundary_and_resume_is_bit_exact(tmp_path):
    # the child and this process train with one thread count (the child would take OMP_NUM_THREADS, this
    # process conftest's count; bit-exactness holds per thread count)
    cfg = [*MICRO, "train.steps=120", "train.log_every=1", "train.batch_size=16",
           f"train.threads={torch.get_num_threads()}"]
    a, b = tmp_path / "interrupted", tmp_path / "straight"
    proc = _cli("train", *cfg, "--out", str(a))
    _wait_for_log(a, 20, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped after step" in err and "--resume latest" in err
    stopped = sorted((a / "checkpoints").iterdir())[-1]
    step = int(stopped.name[5:])
    assert step < 120 and not (a / "final").exists()
    state = torch.load(stopped / "trainer_state.pt", weights_only=True)
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {float(step)}  # every parameter stepped the same number of times: a step boundary
    assert main(["train", *cfg, "--out", str(a), "--resume", "latest"]) == 0
    assert main(["train", *cfg, "--out", str(b)]) == 0
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    la = [json.loads(x) for x in (a / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (b / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def _strict_records(path: Path) -> list[dict]:
    def refuse(const):
        raise AssertionError(f"non-JSON constant {const} in {path}")

    return [json.loads(x, parse_constant=refuse) for x in path.read_text().splitlines()]


def test_divergence_stops_in_one_line_and_keeps_the_last_finite_checkpoint(tmp_path, capsys):
    run = tmp_path / "nan"
    code = main(["train", *MICRO, "train.steps=40", "train.ckpt_every=1", "train.log_every=1", "train.lr=1e6",
                 "--out", str(run)])
    line = _one_line_error(capsys, code, "non-finite")
    assert not (run / "final").exists()
    _strict_records(run / "log.jsonl")
    ckpts = sorted((run / "checkpoints").glob("step_*"))
    if ckpts:  # the newest checkpoint is finite and named in the message
        assert ckpts[-1].name in line
        w = load_file(str(ckpts[-1] / "model.safetensors"))
        assert all(bool(torch.isfinite(t).all()) for t in w.values())
    # and `eval` of the run refuses codes that are NaN instead of scoring them at chance; whether the newest
    # (finite) weights still overflow to NaN codes depends on the machine's arithmetic (on an AMD EPYC they do not):
    # then it is evaluated, with the note that says which checkpoint
    code = main(["eval", str(run), "--no-progress"])
    if code == 0:
        raw = capsys.readouterr().err
        assert "has no final/" in raw and "Traceback" not in raw and ckpts
    else:
        _one_line_error(capsys, code, "not finite")


def test_skip_step_policy_drops_a_nan_step_and_counts_it(tmp_path, monkeypatch, capsys):
    import sparseclip.train.loop as loop

    real = loop.make_loss_fn
    calls = {"n": 0}

    def poisoned(cfg, clip_loss):
        fn = real(cfg, clip_loss)

        def loss_fn(out):
            calls["n"] += 1
            terms = fn(out)
            if calls["n"] == 3:  # the third step's loss is NaN
                terms["contrastive"] = terms["contrastive"] * float("nan")
            return terms

        return loss_fn

    monkeypatch.setattr(loop, "make_loss_fn", poisoned)
    run = tmp_path / "skip"
    assert main(["train", *MICRO, "train.steps=6", "train.log_every=1", "train.nonfinite=skip_step",
                 "--out", str(run)]) == 0
    recs = _strict_records(run / "log.jsonl")
    assert recs[1]["skipped_steps"] == 0 and recs[2]["skipped_steps"] == 1 and recs[2]["loss"] is None
    w = _weights(run)
    assert all(bool(torch.isfinite(t).all()) for t in w.values())
    warned = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("sparseclip:")]
    assert warned == ["sparseclip: warning: 1 of the 6 steps run were skipped (non-finite loss or gradient, "
                      "train.nonfinite=skip_step; skipped_steps in log.jsonl)"]


def test_a_run_folder_is_never_clobbered(tmp_path, capsys):
    run = tmp_path / "r"
    args = ["train", *MICRO, "train.steps=4", "train.ckpt_every=1", "--out", str(run)]
    assert main(args) == 0
    before = _weights(run)
    _one_line_error(capsys, main(args[:-2] + ["train.steps=2", "--out", str(run)]), "already holds a run",
                    "--overwrite")
    assert all(torch.equal(before[k], v) for k, v in _weights(run).items())  # untouched
    assert main(args[:-2] + ["train.steps=2", "train.ckpt_every=0", "--out", str(run), "--overwrite"]) == 0
    steps = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert steps == ["step_000001", "step_000002"]  # no stale step_000003/4 left for --resume latest


def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "busy"
    proc = _cli("train", *MICRO, "train.steps=100000", "train.log_every=1", "--out", str(run))
    try:
        _wait_for_log(run, 1, proc)
        code = main(["train", *MICRO, "train.steps=2", "--out", str(run), "--overwrite"])
        _one_line_error(capsys, code, "is in use", f"pid {proc.pid}")
    finally:
        proc.kill()
        proc.wait()
    # killed with SIGKILL: its lock file is still there but the kernel released the lock
    assert (run / ".lock").exists()
    assert main(["train", *MICRO, "train.steps=2", "--out", str(run), "--overwrite"]) == 0


def test_two_index_appends_at_once_one_is_refused(tmp_path, micro_run, capsys):
    from sparseclip.files.lock import FolderLock

    run, idx = micro_run, tmp_path / "idx"
    assert main(["index", "build", str(run), "--out", str(idx), "--n", "20"]) == 0
    capsys.readouterr()
    with FolderLock(idx, "index build", beside=True):  # another writer holds the index
        code = main(["index", "build", str(run), "--out", str(idx), "--n", "20", "--append"])
        _one_line_error(capsys, code, "is in use")
    assert main(["index", "build", str(run), "--out", str(idx), "--n", "20", "--append"]) == 0
    assert "40 items" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path, micro_run, micro_run_args, capsys):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a.yaml").write_text(f"extends: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"extends: {tmp_path / 'a.yaml'}\n")
    pickle_named = tmp_path / "weights.safetensors"
    torch.save({"x": torch.zeros(1)}, pickle_named)  # a pickle file under a safetensors name
    latin = tmp_path / "latin.csv"
    latin.write_bytes("filepath,title\nimg.png,caf\xe9 cr\xe8me\n".encode("latin-1"))
    cases = [
        (["train", *MICRO, "--out", str(tmp_path / "a_file")], "a file is in the way"),
        (["train", *MICRO, "--out", str(tmp_path / "a_file" / "sub")], "a file is in the way"),
        (["train", str(tmp_path / "a.yaml")], "extends cycle"),
        (["train", *MICRO, "train.keep_last=-3"], "train.keep_last"),
        (["train", *MICRO, "train.ckpt_every=-1"], "train.ckpt_every"),
        (["train", *micro_run_args, "model.head.expansion=16", "--out", str(micro_run), "--resume", "latest"],
         "different configuration"),
        (["train", *MICRO, f"model.pretrained={pickle_named}", "--out", str(tmp_path / "p")],
         "not a readable safetensors file"),
        (["train", *MICRO, "data.kind=csv", f"data.train_data={latin}", "--out", str(tmp_path / "l")], "not UTF-8"),
        (["eval", str(micro_run), "--out", str(tmp_path / "missing" / "e.json")], "does not exist"),
    ]
    for argv, needle in cases:
        _one_line_error(capsys, main(argv), needle)


def test_truncated_last_log_line_is_dropped_on_resume(micro_run_copy, micro_run_args):
    run = micro_run_copy
    log = run / "log.jsonl"
    log.write_text(log.read_text() + '{"step": 99, "lo')  # a writer killed mid-line
    assert main(["train", *micro_run_args, "--out", str(run), "--resume",
                 str(run / "checkpoints" / "step_000002")]) == 0
    assert [r["step"] for r in _strict_records(log)] == [1, 2, 3]


def test_periodic_checkpoints_are_pruned(tmp_path):
    run = tmp_path / "prune"
    assert main(["train", *MICRO, "train.steps=20", "train.ckpt_every=2", "train.keep_last=2",
                 "train.ckpt_fractions=[0.5]", "--out", str(run)]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000010", "step_000018", "step_000020"]


def test_a_fifo_image_is_skipped_not_waited_on(tmp_path):
    from sparseclip.data.base import SkipSample, decode_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(SkipSample, match="not a regular file"):
        decode_image(fifo, lambda im: im)


def test_report_never_links_an_svg(tmp_path):
    from sparseclip.report.html import _figures

    page = _figures([tmp_path / "a.svg", tmp_path / "b.png"], lambda p: p.name)
    assert 'href="a.svg"' not in page and 'src="a.svg"' in page and 'href="b.png"' in page


def test_sizes_beyond_the_machine_are_refused_before_building(tmp_path, capsys, monkeypatch):
    """A head, a batch or an image size larger than the machine's RAM: one line naming the setting, nothing
    built, no run folder; an allocation failure that still happens is one line too."""
    run = tmp_path / "big"
    cases = [(["model.head.expansion=100000000"], "model.head.expansion"),
             (["train.batch_size=1000000000"], "train.batch_size"),
             (["data.image_size=100000"], "data.image_size")]
    for overrides, setting in cases:
        code = main(["train", *MICRO, "train.steps=3", *overrides, "--out", str(run)])
        _one_line_error(capsys, code, setting, "RAM", "lower")
        assert not run.exists()
    import sparseclip.train.loop as loop

    def no_memory(cfg):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 1638400000000 bytes. Error code 12")

    monkeypatch.setattr(loop, "create_model", no_memory)
    code = main(["train", *MICRO, "train.steps=3", "--out", str(run)])
    _one_line_error(capsys, code, "out of memory while building the model", "model.head.expansion")


def test_skip_step_divergence_writes_no_final_and_says_so(tmp_path, capsys, monkeypatch):
    """skip_step through a divergence: the last step skipped means no final/ and one line with the count of
    skipped steps and the newest checkpoint whose weights still gave a finite loss."""
    run = tmp_path / "skipped"
    code = main(["train", *MICRO, "train.steps=20", "train.lr=1e6", "train.nonfinite=skip_step",
                 "train.ckpt_every=1", "--out", str(run)])
    line = _one_line_error(capsys, code, "steps run were skipped", "final/ not written", "train.lr")
    assert not (run / "final").exists() and "step_000020" not in line
    named = [d for d in (run / "checkpoints").glob("step_*") if str(d) in line]
    if not named:  # where the first step already diverges (machine-dependent at lr 1e6), none is known finite
        assert "no checkpoint with weights known to give a finite loss" in line, line
        return
    assert len(named) == 1 and "whose weights gave a finite loss" in line
    assert all(bool(torch.isfinite(t).all()) for t in load_file(str(named[0] / "model.safetensors")).values())
    # finite weights whose codes are not: refused as well
    import sparseclip.train.loop as loop

    monkeypatch.setattr(loop, "_codes_finite", lambda *a: False)
    code = main(["train", *MICRO, "train.steps=3", "--out", str(tmp_path / "codes")])
    _one_line_error(capsys, code, "non-finite codes", "final/ not written")
    assert not (tmp_path / "codes" / "final").exists()


def test_append_to_an_index_of_another_model_is_refused(tmp_path, micro_run, capsys):
    run1, run2, idx = tmp_path / "run1", micro_run, tmp_path / "idx"
    # same code width, different weights (the shared run has seed 0)
    assert main(["train", *MICRO, "train.steps=2", "train.seed=1", "--out", str(run1)]) == 0
    assert main(["index", "build", str(run1), "--out", str(idx), "--n", "10"]) == 0
    before = (idx / "index.json").read_text()
    capsys.readouterr()
    code = main(["index", "build", str(run2), "--out", str(idx), "--n", "10", "--append"])
    _one_line_error(capsys, code, "cannot --append", str(run1), "build a new index")
    # the same folder retrained: its weights changed since the index was built
    assert main(["train", *MICRO, "train.steps=2", "train.seed=5", "--out", str(run1), "--overwrite"]) == 0
    capsys.readouterr()
    code = main(["index", "build", str(run1), "--out", str(idx), "--n", "10", "--append"])
    _one_line_error(capsys, code, "weights have changed")
    assert (idx / "index.json").read_text() == before


def test_out_must_be_a_regular_file_in_a_folder_that_takes_files(tmp_path, micro_run, capsys):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    _one_line_error(capsys, main(["eval", str(micro_run), "--out", str(fifo)]), "not a regular file")
    assert fifo.is_fifo()
    # /proc passes a permission check for root but takes no new file: tried for real, refused before the work
    _one_line_error(capsys, main(["eval", str(micro_run), "--out", "/proc/eval.json"]), "is not writable")
    assert not list(tmp_path.glob(".sparseclip-probe-*"))


def test_output_folders_are_refused_before_the_work(tmp_path, micro_run, capsys, monkeypatch):
    """analyze and index build write folders: a file in the way, or no writable ancestor, is one line before any
    encoding (the library entry points are replaced by ones that fail if reached)."""
    import sparseclip.index.build as build
    import sparseclip.interpret as interpret

    def reached(*a, **k):
        raise AssertionError("the work started")

    monkeypatch.setattr(build, "build_index_from_run", reached)
    monkeypatch.setattr(interpret, "analyze", reached)
    afile = tmp_path / "a_file"
    afile.write_text("x")
    for cmd in (["index", "build", str(micro_run), "--n", "4"], ["analyze", str(micro_run), "--n", "4"]):
        _one_line_error(capsys, main([*cmd, "--out", str(afile)]), "exists and is not a folder")
        _one_line_error(capsys, main([*cmd, "--out", str(afile / "sub" / "dir")]), "is a file, not a folder")
        _one_line_error(capsys, main([*cmd, "--out", "/proc/sparseclip_x/y"]), "/proc is not writable")
    assert afile.read_text() == "x" and not list(tmp_path.glob(".sparseclip-probe-*"))


def test_eval_of_an_unfinished_run_names_its_checkpoint(tmp_path, micro_run_copy, capsys):
    import shutil

    run = micro_run_copy
    shutil.rmtree(run / "final")
    out = tmp_path / "e.json"
    assert main(["eval", str(run), "--out", str(out), "--no-probe", "--no-progress"]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("sparseclip:")]
    newest = run / "checkpoints" / "step_000003"
    assert len(notes) == 1 and notes[0].startswith("sparseclip: note:") and str(newest) in notes[0]
    assert json.loads(out.read_text())["checkpoint_dir"] == str(newest)


def test_refused_resume_leaves_no_folder_behind(tmp_path, capsys):
    run = tmp_path / "never"
    _one_line_error(capsys, main(["train", *MICRO, "--out", str(run), "--resume", "latest"]), "no checkpoints")
    assert not run.exists()
