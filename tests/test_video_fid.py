"""The temporal score of a video search: the labelled clips it learns from, the spatio-temporal
feature network, its cached reference, and the sanity check that a frozen or shuffled clip fails it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.classifier import TrainConfig
from evaluators.clip_classifier import ClipFeatureNet, build_clip_net, clip_accuracy, train_clip_classifier
from evaluators.video_data import load_video_dataset, moving_mnist_labelled
from evaluators.video_fid import clip_reference, temporal_scores

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("frames", "size"), [(1, 28), (4, 28), (8, 32)])
def test_the_clip_network_gives_one_feature_vector_per_clip(frames: int, size: int) -> None:
    net = build_clip_net(in_channels=1, seed=0).eval()
    clips = torch.rand(3, 1, frames, size, size) * 2 - 1
    motion, content = net(clips)
    assert net.features(clips).shape == (3, 64) and motion.shape == (3, 36) and content.shape == (3, 10)
    again = build_clip_net(in_channels=1, seed=0).eval()
    assert torch.equal(again.features(clips), net.features(clips))  # seeded initialisation


def test_the_features_see_the_order_of_frames() -> None:
    net = build_clip_net(in_channels=1, seed=0).eval()
    clips = torch.rand(2, 1, 8, 32, 32) * 2 - 1
    shuffled = clips[:, :, torch.tensor([3, 0, 6, 1, 7, 2, 5, 4])]
    with torch.no_grad():
        assert not torch.allclose(net.features(clips), net.features(shuffled), atol=1e-4)


def test_labelled_clips_are_deterministic_and_their_motion_label_is_the_first_step() -> None:
    clips, motion, content = moving_mnist_labelled(40, frames=4, image_size=32)
    again = moving_mnist_labelled(40, frames=4, image_size=32)
    assert torch.equal(clips, again[0]) and torch.equal(motion, again[1]) and torch.equal(content, again[2])
    assert clips.shape == (40, 1, 4, 32, 32) and clips.min() >= -1 and clips.max() <= 1
    assert int(motion.min()) >= 0 and int(motion.max()) < 36 and int(content.min()) >= 0 and int(content.max()) < 10
    # One digit per clip, moved by whole pixels: its shift between frames 0 and 1 is the labelled
    # velocity (vy major, vx minor over -3..-1, 1..3) unless it bounced off an edge in that step.
    speeds = np.array([-3, -2, -1, 1, 2, 3])
    agree = 0
    for clip, label in zip(clips, motion, strict=True):
        first, second = (np.argwhere((clip[0, frame] > -1).numpy()).mean(0) for frame in (0, 1))
        velocity = np.array([speeds[int(label) // 6], speeds[int(label) % 6]])
        agree += bool(np.allclose(second - first, velocity, atol=1e-6))
    assert agree >= 30, agree  # a bounce in the first step spoils a few


def test_the_clip_classifier_learns_motion_on_the_embedded_clips() -> None:
    clips, motion, content = moving_mnist_labelled(600, frames=4, image_size=16)
    config = TrainConfig(epochs=100, batch_size=32, max_steps=150)
    untrained = build_clip_net(in_channels=1, seed=0)
    model = train_clip_classifier(clips[:500], motion[:500], content[:500], config=config)
    assert isinstance(model, ClipFeatureNet) and not model.training
    before = clip_accuracy(untrained, clips[500:], motion[500:], content[500:])
    after = clip_accuracy(model, clips[500:], motion[500:], content[500:])
    assert after[0] > max(3 * before[0], 4 / 36) and after[1] > before[1]  # chance: 1/36 and 1/10


def test_a_clip_reference_is_cached_and_reused_by_another_process(tmp_path: Path) -> None:
    clips = np.random.default_rng(0).integers(0, 256, size=(30, 4, 16, 16), dtype=np.uint8)
    path = tmp_path / "clips.npy"
    np.save(path, clips)
    data = load_video_dataset(str(path), frames=4, image_size=16)
    first = clip_reference(data, cache_dir=tmp_path / "cache")
    assert first.feature_kind == "clip_random" and not first.from_cache and first.accuracy is None
    assert first.cache_path is not None and first.cache_path.is_file()
    code = ("import sys; from evaluators.video_data import load_video_dataset; "
            "from evaluators.video_fid import clip_reference; "
            f"r = clip_reference(load_video_dataset({str(path)!r}, frames=4, image_size=16), "
            f"cache_dir={str(tmp_path / 'cache')!r}); print(r.from_cache, float(r.mu.sum()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    from_cache, mu_sum = out.stdout.split()
    assert from_cache == "True" and float(mu_sum) == pytest.approx(float(first.mu.sum()), rel=1e-12)


@pytest.mark.slow  # trains the clip classifier once per session (about 30 s)
def test_temporal_scores_rank_real_above_shuffled_and_frozen_clips() -> None:
    data = load_video_dataset("moving_mnist", frames=4, image_size=28, clips=200)
    reference = clip_reference(data)  # the embedded clips' classifier, trained once per cache
    assert reference.feature_kind == "clip_classifier" and reference.accuracy > 0.3
    real = data.train[:32]
    frozen = real[:, :, :1].expand_as(real).contiguous()
    shuffled = real[:, :, torch.tensor([2, 0, 3, 1])]
    scores = {name: temporal_scores(clips, reference)["fvd_proxy"]
              for name, clips in (("real", real), ("frozen", frozen), ("shuffled", shuffled))}
    assert scores["frozen"] > 2 * scores["real"] and scores["shuffled"] > 2 * scores["real"], scores
    assert temporal_scores(real, reference)["fvd_floor"] == reference.floor(32, seed=0)
    with pytest.raises(ValueError, match="at least 2 clips"):
        temporal_scores(real[0, :, 0], reference)
