"""Atomic checkpoints: manifest, verification, fallback, trust, sweeping."""

import time

from rlhf.training import checkpoints


def make_checkpoint(root, step: int, payload: bytes = b"weights"):
    staging = root / f".staging-{step}"
    staging.mkdir(parents=True)
    (staging / "model.safetensors").write_bytes(payload * 100)
    (staging / "training_args.bin").write_bytes(b"pickle")
    return checkpoints.commit(staging, root / "checkpoints", global_step=step, meta={"m": 1})


def test_commit_renames_into_place_with_a_manifest_and_drops_pickles(tmp_path):
    info = make_checkpoint(tmp_path, 7)
    assert info.path == tmp_path / "checkpoints" / "step-00000007"
    assert sorted(p.name for p in info.path.iterdir()) == [
        "model.safetensors",
        checkpoints.MANIFEST,
    ]
    assert not (tmp_path / ".staging-7").exists()
    assert checkpoints.verify(info.path)[0] == info


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    older = make_checkpoint(tmp_path, 1)
    newer = make_checkpoint(tmp_path, 2)
    weights = newer.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:10])
    found, refused = checkpoints.latest_valid(tmp_path / "checkpoints")
    assert found == older
    assert refused == [("step-00000002", "model.safetensors does not match its recorded sha256")]


def test_only_checkpoints_with_a_recorded_hash_load_when_the_caller_lists_them(tmp_path):
    older = make_checkpoint(tmp_path, 1)
    make_checkpoint(tmp_path, 2)
    found, refused = checkpoints.latest_valid(
        tmp_path / "checkpoints", trusted={older.manifest_sha256}
    )
    assert found == older
    assert refused == [("step-00000002", "manifest hash was not recorded by the platform")]


def test_files_not_in_the_manifest_make_a_checkpoint_invalid(tmp_path):
    info = make_checkpoint(tmp_path, 3)
    (info.path / "pytorch_model.bin").write_bytes(b"smuggled")
    found, reason = checkpoints.verify(info.path)
    assert found is None
    assert reason.startswith("unlisted files")


def test_prune_leaves_a_checkpoint_past_keep_until_its_grace_has_passed(tmp_path):
    # given three checkpoints just written (a fast child: the worker has not linked them yet)
    for step in (1, 2, 3):
        make_checkpoint(tmp_path, step)
    folder = tmp_path / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())

    # when the child prunes to 2 within the grace
    checkpoints.prune(folder, keep=2, grace_s=30)

    # then none is removed yet; once the grace has passed, the oldest goes
    assert sorted(p.name for p in folder.iterdir()) == names
    checkpoints.prune(folder, keep=2, grace_s=30, now=time.time() + 31)
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000002", "step-00000003"]


def test_prune_keeps_the_newest_and_sweep_removes_unfinished_writes(tmp_path):
    for step in (1, 2, 3):
        make_checkpoint(tmp_path, step)
    (tmp_path / "checkpoints" / ".staging-4").mkdir()
    checkpoints.prune(tmp_path / "checkpoints", keep=2, grace_s=0)
    checkpoints.sweep_staging(tmp_path / "checkpoints")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-00000002",
        "step-00000003",
    ]
