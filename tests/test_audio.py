"""Audio I/O: exact round trips, atomic writes, and errors that name the file."""

import numpy as np
import pytest
import soundfile as sf

from fxdist.audio import check_not_silent, read_audio, to_mono, write_audio
from fxdist.errors import DataError


def test_pcm24_round_trip_is_exact(tmp_path):
    ints = np.random.default_rng(0).integers(-(2**23), 2**23, size=4096)
    sf.write(tmp_path / "a.wav", ints.astype(np.int32) << 8, 48000, subtype="PCM_24")
    audio, sr = read_audio(tmp_path / "a.wav")
    assert sr == 48000 and audio.dtype == np.float32 and audio.shape == (1, 4096)
    np.testing.assert_array_equal((audio[0].astype(np.float64) * 2**23).astype(np.int64), ints)
    write_audio(tmp_path / "b.wav", audio, sr, subtype="PCM_24")
    again, _ = read_audio(tmp_path / "b.wav")
    np.testing.assert_array_equal(again, audio)


def test_write_is_atomic_and_leaves_no_temp(tmp_path):
    write_audio(tmp_path / "x.wav", np.zeros((1, 10), np.float32), 8000)
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]
    with pytest.raises(DataError, match="x.wav: NaN"):
        write_audio(tmp_path / "x.wav", np.full((1, 10), np.nan, np.float32), 8000)
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


def test_corrupt_and_nan_files_are_named(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00garbage" * 10)
    with pytest.raises(DataError, match="junk.wav: cannot decode audio"):
        read_audio(tmp_path / "junk.wav")
    bad = np.zeros(100, np.float32)
    bad[42] = np.inf
    sf.write(tmp_path / "inf.wav", bad, 8000, subtype="FLOAT")
    with pytest.raises(DataError, match="inf.wav: Inf sample.*sample 42"):
        read_audio(tmp_path / "inf.wav")


def test_silence_and_stereo_checks():
    with pytest.raises(DataError, match="s.wav: audio is silent"):
        check_not_silent(np.zeros((1, 10), np.float32), "s.wav")
    stereo = np.stack([np.ones(4), -np.ones(4) * 0.5]).astype(np.float32)
    with pytest.raises(DataError, match="st.wav: expected mono audio, got 2 channels"):
        to_mono(stereo, "st.wav", downmix=False)
    np.testing.assert_allclose(to_mono(stereo, "st.wav", downmix=True), [[0.25] * 4])


def test_float_wav_bytes_do_not_depend_on_write_time(tmp_path):
    audio = np.linspace(-1, 1, 100, dtype=np.float32)
    write_audio(tmp_path / "a.wav", audio, 8000)
    data = (tmp_path / "a.wav").read_bytes()
    assert b"PEAK" not in data[:256]  # the chunk that would carry a timestamp


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os

    write_audio(tmp_path / "m.wav", np.zeros(10, np.float32), 8000)
    (tmp_path / "plain").write_bytes(b"")
    assert os.stat(tmp_path / "m.wav").st_mode & 0o777 == os.stat(tmp_path / "plain").st_mode & 0o777


def _wav_bytes(tmp_path, frames=1000):
    write_audio(tmp_path / "src.wav", np.full((1, frames), 0.1, np.float32), 48000, subtype="PCM_24")
    return (tmp_path / "src.wav").read_bytes()


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing.wav", None, "missing.wav: no such audio file"),
        ("empty.wav", lambda b: b"", "empty.wav: the file is empty"),
        ("cut.wav", lambda b: b[: len(b) // 2], r"cut.wav: truncated WAV: its header promises 3000 bytes of audio \(1000 frames, the file holds 492\)"),
        ("text.wav", lambda b: b"not audio\n" * 50, "text.wav: cannot decode audio \\(Format not recognised\\).*export it again"),
        ("noise.mp3", lambda b: bytes(range(256)) * 20, "noise.mp3: cannot decode audio \\(no decodable audio stream in it\\)"),
    ],
)
def test_unreadable_audio_names_the_file_and_the_problem(tmp_path, capfd, name, make, message):
    if make is not None:
        (tmp_path / name).write_bytes(make(_wav_bytes(tmp_path)))
    with pytest.raises(DataError, match=message) as info:
        read_audio(tmp_path / name)
    assert "System error" not in str(info.value) and "does not exist" not in str(info.value)
    assert "Note:" not in capfd.readouterr().err  # the MP3 decoder's chatter stays out of the terminal


def test_a_folder_is_not_an_audio_file(tmp_path):
    with pytest.raises(DataError, match="not a regular file"):
        read_audio(tmp_path)


def test_complete_wavs_of_odd_sizes_pass_the_length_check(tmp_path):
    for frames in (1, 7, 1001):
        b = _wav_bytes(tmp_path, frames)
        (tmp_path / "x.wav").write_bytes(b)
        audio, _ = read_audio(tmp_path / "x.wav")
        assert audio.shape == (1, frames)
