"""RunDir, the one run-folder layout: which step folders count, which is newest, what --overwrite removes."""

from sparseclip.model.checkpoint import CheckpointError, resolve_checkpoint
from sparseclip.model.rundir import WEIGHTS, RunDir


def _ckpt(path):
    path.mkdir(parents=True)
    (path / WEIGHTS).write_bytes(b"x")
    return path


def test_steps_latest_and_model_dir(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.step_dirs() == [] and run.latest() is None and run.model_dir() is None
    _ckpt(run.step(5))
    _ckpt(run.step(20))
    (run.checkpoints_dir / "step_000030").mkdir()  # a step folder without weights (interrupted write)
    _ckpt(run.checkpoints_dir / "step_000040.tmp")  # an unpublished write: not a step
    _ckpt(run.checkpoints_dir / "step_000050.old")
    assert [s for s, _ in run.step_dirs()] == [5, 20, 30]
    assert [s for s, _ in run.checkpoints()] == [5, 20]
    assert run.latest() == run.step(20) == run.checkpoints_dir / "step_000020"
    assert run.model_dir() == run.step(20) and resolve_checkpoint(run.path) == run.step(20)
    _ckpt(run.final)
    assert run.has_final() and run.model_dir() == run.final == resolve_checkpoint(run.path)


def test_of_finds_the_run_of_any_of_its_checkpoints(tmp_path):
    run = tmp_path / "r"
    assert RunDir.of(run / "final").path == run
    assert RunDir.of(run / "checkpoints" / "step_000002").path == run
    assert RunDir.of(run).path == run
    assert RunDir.of(tmp_path / "loose_ckpt").path == tmp_path / "loose_ckpt"  # a bare checkpoint dir is its own
    assert RunDir.of(run / "checkpoints" / "notastep").path == run / "checkpoints" / "notastep"


def test_run_files_and_clear_keep_what_is_not_the_run(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.run_files() == []
    _ckpt(run.final)
    _ckpt(run.step(1))
    run.log.write_text("{}\n")
    run.features.write_bytes(b"cache")  # keyed by content and reused: not part of what --overwrite replaces
    (run.path / "notes.txt").write_text("mine")
    assert run.run_files() == ["log.jsonl", "final", "checkpoints"]
    run.clear()
    assert run.run_files() == [] and run.features.is_file() and (run.path / "notes.txt").is_file()


def test_resolve_checkpoint_of_an_empty_folder_is_one_line(tmp_path):
    try:
        resolve_checkpoint(tmp_path)
    except CheckpointError as e:
        assert "no model.safetensors here" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("an empty folder resolved to a checkpoint")
