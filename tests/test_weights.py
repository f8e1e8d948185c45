"""Finding and loading the VGG-19 weights: order, formats, caching, and the one clear error."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from batchstyle.engine import weights as W


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No weights anywhere: empty cache, no environment variable."""
    monkeypatch.setenv(W.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(W.ENV_WEIGHTS, raising=False)
    return tmp_path


def full_state_dict(weights):
    """A full torchvision vgg19() state dict: features plus a (small, fake) classifier."""
    state = dict(weights.tensors)
    state["classifier.0.weight"] = torch.zeros(4, 4)
    state["classifier.0.bias"] = torch.zeros(4)
    return state


def offline():
    raise OSError("[Errno 101] Network is unreachable")


def test_offline_with_nothing_gives_one_error_naming_both_ways(isolated):
    with pytest.raises(W.WeightsError) as err:
        W.resolve_weights(downloader=offline)
    message = str(err.value)
    assert "weights file" in message and f"{W.ENV_WEIGHTS}=PATH" in message
    assert "internet" in message and str(isolated / "cache") in message
    assert "Network is unreachable" in message


def test_explicit_file_beats_environment_beats_cache(isolated, random_weights, monkeypatch):
    explicit, env, cached = isolated / "a.safetensors", isolated / "b.pt", isolated / "cache" / W.CACHE_NAME
    save_file(dict(random_weights.tensors), str(explicit))
    torch.save(full_state_dict(random_weights), env)
    random_weights.save(cached)
    monkeypatch.setenv(W.ENV_WEIGHTS, str(env))
    assert W.resolve_weights(explicit, downloader=offline).source == str(explicit)
    assert W.resolve_weights(downloader=offline).source == str(env)
    monkeypatch.delenv(W.ENV_WEIGHTS)
    assert W.resolve_weights(downloader=offline).source == str(cached)
    # all three are the same tensors, so the same identity (part of every item id)
    ids = {W.resolve_weights(p, downloader=offline).identity for p in (explicit, env, cached)}
    assert ids == {random_weights.identity}


def test_download_keeps_only_the_conv_layers_and_caches_them(isolated, random_weights):
    calls = []

    def fake_download():
        calls.append(1)
        return full_state_dict(random_weights)

    first = W.resolve_weights(downloader=fake_download)
    cached = isolated / "cache" / W.CACHE_NAME
    assert cached.is_file() and first.identity == random_weights.identity
    from safetensors.torch import load_file

    assert sorted(load_file(str(cached))) == sorted(W.KEYS)
    second = W.resolve_weights(downloader=fake_download)
    assert calls == [1] and second.source == str(cached)


def test_accepts_features_only_keys_without_prefix_and_pt_files(isolated, random_weights):
    bare = {k.removeprefix("features."): v for k, v in random_weights.tensors.items()}
    path = isolated / "bare.pth"
    torch.save(bare, path)
    assert W.load_weights_file(path).identity == random_weights.identity


def test_rejects_wrong_or_foreign_files_clearly(isolated, random_weights):
    missing = isolated / "nope.safetensors"
    with pytest.raises(W.WeightsError, match="does not exist"):
        W.load_weights_file(missing)
    garbage = isolated / "garbage.safetensors"
    garbage.write_bytes(b"not a tensor file")
    with pytest.raises(W.WeightsError, match="garbage.safetensors is not a VGG-19 weights file: it cannot be "
                                             "read as safetensors"):
        W.load_weights_file(garbage)
    text = isolated / "notes.pt"
    text.write_text("my notes, not weights\n")  # torch.load's own text here is a page about pickles
    with pytest.raises(W.WeightsError) as caught:
        W.load_weights_file(text)
    message = str(caught.value)
    assert message.startswith(f"{text} is not a VGG-19 weights file: it cannot be read as a PyTorch file (")
    assert "Accepted: a .safetensors, .pt or .pth file" in message
    assert "weights_only" not in message and "file an issue" not in message and "\n" not in message
    vgg16ish = dict(random_weights.tensors)
    vgg16ish["features.34.weight"] = torch.zeros(512, 512, 1, 1)
    with pytest.raises(W.WeightsError, match="features.34.weight has shape"):
        W.VGGWeights.from_state_dict(vgg16ish, "x")
    partial = {k: v for k, v in random_weights.tensors.items() if not k.startswith("features.34")}
    with pytest.raises(W.WeightsError, match="missing 2 of 32 conv tensors"):
        W.VGGWeights.from_state_dict(partial, "x")
    with pytest.raises(W.WeightsError, match="not the model"):
        W.VGGWeights.from_state_dict([1, 2], "model.pt")


def test_real_weights_file_loads_with_an_identity_that_travels(real_weights):
    assert sorted(real_weights.tensors) == sorted(W.KEYS)
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in real_weights.tensors.values())
    assert real_weights.tensors["features.0.weight"].shape == (64, 3, 3, 3)
    # part of every item id: workers that get the tensors as arrays must compute the same identity
    assert real_weights.identity.startswith("vgg19-")
    assert W.VGGWeights.from_numpy(real_weights.to_numpy()).identity == real_weights.identity
