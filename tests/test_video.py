"""Frames chosen from a video (aetherscan.video) on clips made here from the flowerpot photos
(video_kit.py): sharp ones, spaced by the view's change, every photo's view covered, named by
their time; rotation and focal metadata honoured; damaged and over-limit clips refused or cut
with a sentence."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from video_kit import FLOWERPOT, add_focal_metadata, photo_pan_clip, rotate_mp4

from aetherscan.video import VideoError, sample_video, sniff_video


@pytest.fixture(scope="module")
def blurred_clip(tmp_path_factory):
    return photo_pan_clip(tmp_path_factory.mktemp("clips") / "pot.mp4", blur_every=3)


def test_no_blurred_frame_is_chosen_and_every_photo_s_view_is_covered(blurred_clip):
    clip = blurred_clip
    sampled = sample_video(clip.path)
    frames = [clip.frame_at(frame.time_s) for frame in sampled.frames]
    assert not set(frames) & clip.blurred, sorted(set(frames) & clip.blurred)
    photos = {clip.photo_of_frame[index] for index in frames}
    assert photos == set(clip.photo_of_frame), f"views not covered: {set(range(10)) - photos}"
    # Spaced: a pan over a fifth of a photo gives a few frames, not one per frame.
    assert len(frames) <= 4 * 10, len(frames)
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert sampled.frames[0].name.startswith("pot-t") and sampled.frames[0].name.endswith("s.jpg")
    assert abs(sampled.duration_s - len(clip.photo_of_frame) / clip.fps) < 0.1
    with Image.open(io.BytesIO(sampled.frames[0].jpeg)) as image:
        assert image.size == (360, 480)


def test_a_still_camera_gives_one_frame_and_max_frames_thins_evenly(tmp_path, blurred_clip):
    one = sorted(FLOWERPOT.glob("*.jpg"))[:1]
    still = photo_pan_clip(tmp_path / "still.mp4", photos=one, seconds_per_photo=3.0, pan=False)
    assert len(sample_video(still.path).frames) == 1
    few = sample_video(blurred_clip.path, max_frames=5)
    assert len(few.frames) == 5
    assert any("max_video_frames" in note for note in few.notes)


def test_a_rotated_clip_gives_upright_frames(tmp_path):
    clip = photo_pan_clip(tmp_path / "turned.mp4", photos=None, seconds_per_photo=0.4)
    plain = sample_video(clip.path)
    rotate_mp4(clip.path, 90)
    turned = sample_video(clip.path)
    assert (turned.width, turned.height) == (480, 360)
    with (
        Image.open(io.BytesIO(plain.frames[0].jpeg)) as a,
        Image.open(io.BytesIO(turned.frames[0].jpeg)) as b,
    ):
        assert b.size == (480, 360)
        # The same picture turned a quarter clockwise (phones' 90): compare small copies.
        upright = np.asarray(a.convert("L").resize((36, 48)), float)
        rotated = np.asarray(b.convert("L").rotate(90, expand=True).resize((36, 48)), float)
        assert np.abs(upright - rotated).mean() < 12


def test_focal_length_metadata_becomes_each_frame_s_exif(tmp_path):
    clip = photo_pan_clip(tmp_path / "phone.mov", seconds_per_photo=0.4)
    add_focal_metadata(clip.path, 26.0)
    sampled = sample_video(clip.path)
    assert sampled.focal_35mm == pytest.approx(26.0)
    with Image.open(io.BytesIO(sampled.frames[0].jpeg)) as image:
        assert image.getexif().get_ifd(0x8769)[0xA405] == 26
    assert (
        sample_video(photo_pan_clip(tmp_path / "plain.mp4", seconds_per_photo=0.4).path).focal_35mm
        is None
    )


def test_a_webm_cut_short_keeps_the_frames_before_the_cut(tmp_path):
    clip = photo_pan_clip(tmp_path / "cut.webm", seconds_per_photo=0.6)
    whole = sample_video(clip.path)
    data = clip.path.read_bytes()
    clip.path.write_bytes(data[: len(data) // 2])
    cut = sample_video(clip.path)
    assert 0 < len(cut.frames) < len(whole.frames)
    assert cut.duration_s < 0.7 * whole.duration_s
    assert any("cut short" in note and "frames before were kept" in note for note in cut.notes)


def test_an_mp4_cut_short_or_not_a_video_is_refused_with_a_sentence(tmp_path):
    clip = photo_pan_clip(tmp_path / "cut.mp4", seconds_per_photo=0.4)
    data = clip.path.read_bytes()
    clip.path.write_bytes(data[: len(data) // 2])  # its index (moov) is at the end: gone
    with pytest.raises(VideoError, match=r"cannot be read as a video|no frame"):
        sample_video(clip.path)
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(b"\0\0\0\x18ftypisom" + bytes(range(256)) * 40)
    with pytest.raises(VideoError, match="noise"):
        sample_video(noise)


def test_limits_refuse_long_and_huge_clips_naming_the_setting(tmp_path):
    clip = photo_pan_clip(tmp_path / "long.mp4", seconds_per_photo=0.5)
    with pytest.raises(
        VideoError, match=r"\d s long, more than the limit of 2 s \(setting max_video_seconds\)"
    ):
        sample_video(clip.path, max_seconds=2)
    with pytest.raises(VideoError, match="max_photo_megapixels"):
        sample_video(clip.path, max_megapixels=0.1)


def test_containers_are_told_by_their_first_bytes(tmp_path):
    assert sniff_video(b"\0\0\0\x18ftypisom\0\0\0\0") == "mp4"
    assert sniff_video(b"\0\0\0\x14ftypqt  \0\0\0\0") == "mov"
    assert sniff_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81") == "webm"
    assert sniff_video(b"\xff\xd8\xff\xe0\0\x10JFIF") is None
    assert sniff_video(b"\0\0\0\x18ftypheic\0\0\0\0") is None  # a HEIC photo
    assert sniff_video(b"\0\0\0\x1cftypavif\0\0\0\0") is None
    webm = photo_pan_clip(tmp_path / "a.webm", seconds_per_photo=0.2).path
    assert sniff_video(webm.read_bytes()[:16]) == "webm"
