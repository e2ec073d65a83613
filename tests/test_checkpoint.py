"""Checkpoints: they rebuild their model, load safely (weights_only), are written atomically, fail clearly."""

import os
import pathlib
import stat

import pytest
import torch

import course_lib.checkpoint as checkpoint_module
from course_lib import (
    CheckpointError,
    GatedPixelCNN,
    ImageDataset,
    PixelCNN,
    fit,
    load_checkpoint,
    load_into,
    load_model,
    save_checkpoint,
)
from course_lib.checkpoint import FORMAT

SHAPE = (1, 6, 6)


def tiny_model(seed=0, channels=4, **kw):
    torch.manual_seed(seed)
    return GatedPixelCNN(image_shape=SHAPE, channels=channels, dilations=(1,), **kw)


def tiny_data(n=4):
    return ImageDataset("tiny", torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(0)), torch.zeros(n))


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# -- round trip -------------------------------------------------------------------------------------------
def test_round_trip_rebuilds_the_model_in_eval_mode(tmp_path):
    model = tiny_model(num_classes=3).train()
    path = save_checkpoint(tmp_path / "m.pt", model, epoch=3, note="hello")
    assert path == tmp_path / "m.pt"
    payload = load_checkpoint(path)
    assert payload["format"] == FORMAT and payload["model_name"] == "gated"
    assert payload["model_config"] == model.config and payload["epoch"] == 3 and payload["note"] == "hello"
    rebuilt = load_model(path)
    assert type(rebuilt) is GatedPixelCNN and rebuilt.config == model.config
    assert not rebuilt.training
    assert same_weights(rebuilt, model)
    x, y = torch.randint(0, 2, (2, *SHAPE)), torch.tensor([1, 2])
    assert torch.equal(rebuilt(x, y), model.eval()(x, y))


def test_load_into_fills_an_existing_model_and_returns_the_whole_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(seed=1), epoch=7)
    target = tiny_model(seed=2)
    payload = load_into(target, path)
    assert payload["epoch"] == 7
    assert same_weights(target, tiny_model(seed=1))


def test_load_checkpoint_honours_map_location(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model())
    payload = load_checkpoint(path, map_location="meta")
    assert all(t.device.type == "meta" for t in payload["state_dict"].values())
    assert all(t.device.type == "cpu" for t in load_checkpoint(path)["state_dict"].values())


def test_save_makes_missing_folders_and_overwrites(tmp_path):
    path = tmp_path / "a" / "b" / "m.pt"
    save_checkpoint(path, tiny_model(seed=1))
    save_checkpoint(path, tiny_model(seed=2))  # the folder exists now, the file too
    assert same_weights(load_model(path), tiny_model(seed=2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]


def test_saved_tensors_are_on_the_cpu_and_free_of_autograd(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model())
    state = torch.load(path, weights_only=True)["state_dict"]
    assert all(t.device.type == "cpu" and not t.requires_grad for t in state.values())


# -- atomic writes -------------------------------------------------------------------------------------------
def test_the_file_is_a_readable_0644_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_written_to_a_synced_temporary_file_next_to_it_then_moved_into_place(tmp_path, monkeypatch):
    """The temporary file lives in the destination folder (os.replace is atomic only within one file system),
    is named after the destination, and its complete bytes are flushed and fsynced before the move."""
    synced, moves = {}, []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        real_fsync(fd)
        synced[os.fstat(fd).st_ino] = os.fstat(fd).st_size

    def replace(src, dst):
        moves.append((pathlib.Path(src), pathlib.Path(dst), os.stat(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model())
    assert len(moves) == 1
    src, dst, before_move = moves[0]
    assert dst == path and src.parent == path.parent
    assert src.name.startswith("m.pt.") and src.name.endswith(".tmp") and src != path
    assert synced == {before_move.st_ino: before_move.st_size} and before_move.st_size == path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch, error):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(seed=1))
    good = path.read_bytes()

    def broken_save(payload, f):
        f.write(b"half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(type(error)):
        save_checkpoint(path, tiny_model(seed=2))
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


# -- safe and clear loading ----------------------------------------------------------------------------------
class Payload:
    """Unpickling this object runs code: it creates the file `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.mark.parametrize("torch_default", ["safe", "unsafe"])
def test_a_pickle_with_arbitrary_code_is_refused_not_run(tmp_path, monkeypatch, torch_default):
    """torch.load(weights_only=True) is asked for explicitly, also where torch's default is unsafe (torch < 2.6 or
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1)."""
    if torch_default == "unsafe":
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model_name": "gated", "x": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="corrupted or incomplete"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_file_or_folder_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_model(tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path)


def test_files_that_are_not_our_checkpoints_fail_clearly(tmp_path):
    for name, content in (
        ("list.pt", [1, 2]),
        ("dict.pt", {"state_dict": {}}),
        ("other.pt", {"format": "someone-else/1"}),
    ):
        torch.save(content, tmp_path / name)
        with pytest.raises(CheckpointError, match="is not a pixelcnn-course checkpoint"):
            load_checkpoint(tmp_path / name)


def test_corrupted_or_truncated_checkpoint_fails_clearly_and_stays_intact(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupted or incomplete"):
        load_model(path)
    with pytest.raises(CheckpointError, match="corrupted"):
        fit(tiny_model(), tiny_data(), epochs=1, checkpoint=path, resume=True, device="cpu")
    assert path.read_bytes() == b"this is not a checkpoint"
    truncated = save_checkpoint(tmp_path / "truncated.pt", tiny_model())
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupted or incomplete"):
        load_model(truncated)


def test_checkpoint_of_another_architecture_fails_clearly_and_stays_intact(tmp_path):
    path = save_checkpoint(tmp_path / "pixelcnn.pt", PixelCNN(image_shape=SHAPE, channels=4, n_blocks=1))
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="holds a pixelcnn model.*this model is a gated"):
        load_into(tiny_model(), path)
    with pytest.raises(CheckpointError, match="holds a pixelcnn"):
        fit(tiny_model(), tiny_data(), epochs=1, checkpoint=path, resume=True, device="cpu")
    assert path.read_bytes() == before
    wider = save_checkpoint(tmp_path / "wider.pt", tiny_model(channels=8))
    with pytest.raises(CheckpointError, match="holds a gated model .*'channels': 8.*'channels': 4"):
        load_into(tiny_model(), wider)


def test_weights_that_do_not_match_their_description_fail_in_one_clear_line(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model())
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["out2.bias"]
    torch.save(payload, path)
    for load in (load_model, lambda p: load_into(tiny_model(), p)):
        with pytest.raises(CheckpointError, match=r"does not match the model it describes \(Missing key") as err:
            load(path)
        assert "\n" not in str(err.value) and "out2.bias" in str(err.value)


def test_the_configuration_comparison_ignores_list_versus_tuple():
    model = tiny_model()
    payload = {"model_name": "gated", "model_config": {**model.config, "image_shape": SHAPE, "dilations": (1,)}}
    checkpoint_module.check_same_architecture(model, payload, "m.pt")  # no error
    payload["model_config"]["dilations"] = (2,)
    with pytest.raises(CheckpointError):
        checkpoint_module.check_same_architecture(model, payload, "m.pt")
