"""fxdist.export: every format read back by an independent reader and compared with the model.

- TorchScript: ``torch.jit.load``; ONNX: onnxruntime (one thread), in irregular blocks.
- NAM: Neural Amp Modeler's own loader (``nam.models.init_from_nam`` of the PyPI package
  neural-amp-modeler 0.13, installed with --no-deps; skipped where it is absent) on .nam 0.7.0
  files. That release no longer reads 0.5 WaveNets, so 0.5.4 files are checked with
  ``fxdist.export.nam_forward`` (a numpy implementation of NAM's forward read from the file)
  and, after renaming their legacy keys the way NeuralAmpModelerCore does, with NAM's loader.
- RTNeural: C++, so ``fxdist.export.rtneural_forward`` is an independent numpy
  reimplementation of RTNeural's LSTM/GRU/dense math reading the JSON as its json_parser does
  (weights indexed as in RTNeural's setWVals/setUVals/setBVals), plus AIDA-X's ``in_skip``.
"""

import copy
import json
import warnings

import numpy as np
import pytest
import torch

from fxdist.checkpoint import Checkpoint, save_checkpoint
from fxdist.cli import main as cli_main
from fxdist.errors import ConfigError, FxdistError
from fxdist.export import (
    ExportError,
    ExportMetadata,
    export_model,
    load_torchscript,
    nam_dict,
    nam_forward,
    offline_output,
    onnx_initial_state,
    onnx_session,
    read_back,
    reference_signal,
    rtneural_dict,
    rtneural_forward,
    torchscript_metadata,
)
from fxdist.models import build_model, build_model_from_yaml, model_config_dict
from fxdist.presets import model_preset
from tests.models.common import ModelContract

SR = 8000
NAM_WAVENET = {"family": "wavenet", "layout": "nam", "stacks": [
    {"channels": 4, "kernel_size": 3, "dilations": [1, 2, 4]}, {"channels": 3, "kernel_size": 3, "dilations": [8, 1]}],
    "gated": False, "activation": "tanh", "head_scale": 1.0}
MODELS = {
    "wavenet-nam": NAM_WAVENET,
    "wavenet-nam-gated": {**NAM_WAVENET, "gated": True},
    "wavenet-nam-relu": {**NAM_WAVENET, "activation": "relu", "head_scale": 0.5},
    "wavenet": {"family": "wavenet", "stacks": [{"channels": 4, "kernel_size": 3, "dilations": [1, 2, 4]}],
                "skip_channels": 4, "head_channels": 4, "input_skip": True},
    "wavenet-mol": {"family": "wavenet", "stacks": [{"channels": 3, "kernel_size": 3, "dilations": [1, 2]}],
                    "skip_channels": 3, "head_channels": 3, "output": "mol", "mol_components": 2},
    "lstm": {"family": "lstm", "hidden_size": 8, "num_layers": 2, "input_skip": False},
    "lstm-skip": {"family": "lstm", "hidden_size": 8, "input_skip": True},
    "gru": {"family": "lstm", "hidden_size": 8, "cell": "gru", "input_skip": True},
    "gru-2": {"family": "lstm", "hidden_size": 5, "num_layers": 2, "cell": "gru", "input_skip": False},
    "tcn": {"family": "tcn", "channels": 4, "kernel_size": 3, "num_layers": 3, "dilation_growth": 4},
    "fcn": {"family": "fcn", "channels": 4, "kernel_size": 3, "dilations": [1, 2, 4]},
    "cnn": {"family": "cnn", "window": 32, "channels": [4], "kernel_size": 5, "pool": 4, "hidden": 8, "direct_taps": 4},
    "fir": {"family": "fir", "length": 300},
    "chorus": {"family": "chorus", "sample_rate": SR, "max_delay_ms": 4.0, "feedback_terms": 2, "rate_hz": 40.0,
               "centre_ms": 2.0, "depth_ms": 1.0, "feedback": 0.3},
    "grainpitch": {"family": "grainpitch", "grain": 48, "post_taps": 6},
    "wh": {"family": "wh", "pre_length": 40, "post_length": 200, "sample_rate": SR},
}


def make(name: str):
    torch.manual_seed(0)
    model = build_model(dict(MODELS[name])).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def meta(**kw) -> ExportMetadata:
    return ExportMetadata(**{"name": "test model", "sample_rate": SR, "loudness_db": -20.5, "gain": 0.4,
                             "validation_esr": 0.0123, "gear_type": "pedal", "tone_type": "overdrive", **kw})


def signal(seconds: float = 0.3) -> np.ndarray:
    return reference_signal(SR, seconds) * 3  # louder than the reference: drive the nonlinearities


def report(what: str, err: float) -> None:
    print(f"{what}: max abs error {err:.3g}")


class TestWaveNetNamLayoutContract(ModelContract):
    """The nam layout keeps every model guarantee (shapes, exact RF, streaming, learning, MACs)."""

    config = {**NAM_WAVENET, "head_scale": 0.02}


def test_nam_layout_config_checks_and_preset():
    with pytest.raises(ConfigError, match="layout 'nam' needs output 'regression' and input_skip false"):
        build_model({**NAM_WAVENET, "input_skip": True})
    with pytest.raises(ConfigError, match="layout 'nam'"):
        build_model({**NAM_WAVENET, "output": "mol"})
    model = build_model_from_yaml(model_preset("wavenet-nam"))
    weights = nam_dict(model, meta(sample_rate=48000))["weights"]
    # NAM "standard": 13,802 weights = our parameters + the unused last 1x1 (8*8+8) + head_scale.
    assert len(weights) == model.num_parameters() + 72 + 1 == 13802
    assert model.receptive_field == 4093


# --- NAM -------------------------------------------------------------------------------------


def _nam_loader():
    pytest.importorskip("nam", reason="neural-amp-modeler not installed (pip install --no-deps neural-amp-modeler)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nam.models import init_from_nam
    return init_from_nam


def _run_nam(init_from_nam, d: dict, x: np.ndarray) -> np.ndarray:
    net = init_from_nam(copy.deepcopy(d)).eval()
    with torch.no_grad():
        return net(torch.from_numpy(x)[None], pad_start=True)[0].double().numpy()


def _legacy_to_current(d: dict) -> dict:
    """0.5 -> 0.7 keys as NeuralAmpModelerCore's parser reads legacy files (head_size/head_bias -> head
    with kernel 1; gated -> gating_mode with a Sigmoid secondary); weights unchanged."""
    d = copy.deepcopy(d)
    for lc in d["config"]["layers"]:
        n = len(lc["dilations"])
        lc["head"] = {"out_channels": lc.pop("head_size"), "kernel_size": 1, "bias": lc.pop("head_bias")}
        gated = lc.pop("gated")
        lc["activation"] = [{"type": lc["activation"]}] * n
        lc["gating_mode"] = ["gated" if gated else "none"] * n
        lc["secondary_activation"] = [{"type": "Sigmoid"} if gated else None] * n
    return d


@pytest.mark.parametrize("name", ["wavenet-nam", "wavenet-nam-gated", "wavenet-nam-relu", "lstm"])
def test_nam_07_loads_in_nam_and_matches(name, tmp_path):
    init_from_nam = _nam_loader()
    model = make(name)
    x = signal()
    path = tmp_path / "m.nam"
    r = export_model(model, "nam", path, meta(), nam_version="0.7")
    d = json.loads(path.read_text())
    assert d["version"] == "0.7.0" and d["architecture"] == ("LSTM" if name == "lstm" else "WaveNet")
    err = float(np.max(np.abs(_run_nam(init_from_nam, d, x) - offline_output(model, x))))
    report(f"NAM loader vs fxdist ({name}, .nam 0.7.0)", err)
    assert err < 1e-5 and r.max_abs_error < 1e-5
    assert np.max(np.abs(offline_output(model, x))) > 0.05  # the comparison is not between near-zeros


@pytest.mark.parametrize("name", ["wavenet-nam", "wavenet-nam-gated", "lstm"])
def test_nam_05_legacy_file_matches(name, tmp_path):
    model = make(name)
    x = signal()
    path = tmp_path / "m.nam"
    export_model(model, "nam", path, meta(), nam_version="0.5")
    d = json.loads(path.read_text())
    assert d["version"] == "0.5.4"
    want = offline_output(model, x)
    err = float(np.max(np.abs(nam_forward(d, x) - want)))
    report(f"numpy NAM forward vs fxdist ({name}, .nam 0.5.4)", err)
    assert err < 1e-5
    if name != "lstm":
        layer = d["config"]["layers"][0]
        assert set(layer) == {"input_size", "condition_size", "head_size", "channels", "kernel_size", "dilations",
                              "activation", "gated", "head_bias"}
        d = _legacy_to_current(d)
    init_from_nam = _nam_loader()
    err = float(np.max(np.abs(_run_nam(init_from_nam, d, x) - want)))
    report(f"NAM loader vs fxdist ({name}, .nam 0.5.4 keys renamed)", err)
    assert err < 1e-5


def test_nam_metadata_fields():
    d = nam_dict(make("lstm"), meta(gear_make="Acme", gear_model="Fuzz One", modeled_by="me"))
    assert d["sample_rate"] == SR and d["config"] == {"input_size": 1, "hidden_size": 8, "num_layers": 2}
    m = d["metadata"]
    assert m["name"] == "test model" and m["loudness"] == -20.5 and m["gain"] == 0.4
    assert (m["gear_type"], m["gear_make"], m["gear_model"], m["tone_type"], m["modeled_by"]) == (
        "pedal", "Acme", "Fuzz One", "overdrive", "me")
    assert m["training"]["validation_esr"] == 0.0123
    assert set(m["date"]) == {"year", "month", "day", "hour", "minute", "second"}


@pytest.mark.parametrize("name, why", [
    ("wavenet", "differs from fxdist's layout"),
    ("lstm-skip", "no input skip"),
    ("gru", "no GRU"),
    ("tcn", "WaveNet, LSTM and Linear"),
])
def test_nam_refuses_what_it_cannot_represent(name, why, tmp_path):
    with pytest.raises(ExportError, match=why) as info:
        export_model(make(name), "nam", tmp_path / "m.nam", meta())
    assert "Formats this model can use: " in str(info.value) and "By family: " in str(info.value)
    assert "wavenet: onnx, torchscript, nam (layout nam)" in str(info.value)
    assert not (tmp_path / "m.nam").exists()


# --- RTNeural ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm", "lstm-skip", "gru", "gru-2"])
def test_rtneural_json_matches(name, tmp_path):
    model = make(name)
    x = signal()
    path = tmp_path / "m.json"
    r = export_model(model, "rtneural", path, meta())
    d = json.loads(path.read_text())
    err = float(np.max(np.abs(rtneural_forward(d, x) - offline_output(model, x))))
    report(f"numpy RTNeural vs fxdist ({name})", err)
    assert err < 1e-5 and r.max_abs_error < 1e-5
    cfg = model.cfg
    gates = 4 if cfg.cell == "lstm" else 3
    hidden = cfg.hidden_size
    assert d["in_shape"] == [None, None, 1] and d["in_skip"] == int(cfg.input_skip)
    first = d["layers"][0]
    assert first["type"] == cfg.cell and first["shape"] == [None, None, hidden] and first["activation"] == ""
    assert np.shape(first["weights"][0]) == (1, gates * hidden)
    assert np.shape(first["weights"][1]) == (hidden, gates * hidden)
    assert np.shape(first["weights"][2]) == ((gates * hidden,) if cfg.cell == "lstm" else (2, gates * hidden))
    assert d["layers"][-1]["type"] == "dense" and np.shape(d["layers"][-1]["weights"][0]) == (hidden, 1)
    assert d["metadata"]["samplerate"] == str(SR) and d["metadata"]["esr"] == 0.0123
    assert bool(r.notes) == (cfg.num_layers > 1 or hidden not in (8, 12, 16, 20, 24, 32, 40, 64, 80))


def test_rtneural_in_skip_is_the_input_skip():
    """AIDA-X adds the input when in_skip is 1: dropping it removes exactly x from the output."""
    model = make("lstm-skip")
    d = rtneural_dict(model, meta())
    x = signal(0.05)
    without = dict(d, in_skip=0)
    np.testing.assert_allclose(rtneural_forward(d, x) - rtneural_forward(without, x), x, atol=1e-12)


def test_rtneural_refuses_conv_models(tmp_path):
    with pytest.raises(ExportError, match="recurrent \\+ dense.*Formats this model can use: torchscript, onnx"):
        export_model(make("wavenet-nam"), "rtneural", tmp_path / "m.json", meta())
    with pytest.raises(ExportError, match="cnn.*Formats this model can use: none"):
        export_model(make("cnn"), "rtneural", tmp_path / "m.json", meta())


# --- ONNX and TorchScript ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wavenet", "wavenet-mol", "wavenet-nam-gated", "tcn", "fcn", "lstm", "gru", "fir", "chorus", "grainpitch", "wh"])
def test_onnx_streams_like_pytorch(name, tmp_path):
    import onnx

    model = make(name)
    x = signal(0.2)
    path = tmp_path / "m.onnx"
    export_model(model, "onnx", path, meta())
    got = read_back("onnx", path, x, blocks=[1, 1, 300, 5, 64, 2000])
    err = float(np.max(np.abs(got - offline_output(model, x))))
    report(f"onnxruntime vs fxdist ({name})", err)
    assert err < 1e-5
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["sample_rate"] == str(SR) and json.loads(props["fxdist.metadata"])["validation_esr"] == 0.0123
    # two lanes at once (dynamic batch), each equal to the single-lane output
    sess = onnx_session(path)
    state = onnx_initial_state(path, batch=2)
    xx = np.stack([x[:200], -x[:200]])[:, None, :].astype(np.float32)
    y, *_ = sess.run(None, {"x": xx, **{f"state_in_{i}": s for i, s in enumerate(state)}})
    np.testing.assert_allclose(y[0, 0], got[:200], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["wavenet-mol", "wavenet-nam", "tcn", "gru", "fir", "chorus", "grainpitch", "wh"])
def test_torchscript_streams_like_pytorch(name, tmp_path):
    model = make(name)
    x = signal(0.2)
    path = tmp_path / "m.pt"
    export_model(model, "torchscript", path, meta())
    err = float(np.max(np.abs(read_back("torchscript", path, x) - offline_output(model, x))))
    report(f"torch.jit.load vs fxdist ({name})", err)
    assert err < 1e-5
    info = torchscript_metadata(path)
    assert info["sample_rate"] == SR and info["name"] == "test model"
    assert info["model_config"] == model_config_dict(model)
    loaded = load_torchscript(path)
    assert len(loaded.initial_state(3)) == len(loaded.initial_state(1))


def test_ir_wav_is_the_impulse_response(tmp_path):
    """fir -> a mono float WAV of its taps; an IR loader's convolution (scipy) reproduces the model."""
    import soundfile as sf

    model = make("fir")
    path = tmp_path / "cab.wav"
    rep = export_model(model, "ir", path, meta())
    assert rep.max_abs_error < 1e-5 and "300 taps" in rep.notes[0]
    taps, rate = sf.read(path, dtype="float32")
    assert rate == SR and sf.info(path).subtype == "FLOAT"
    np.testing.assert_array_equal(taps, model.taps.detach().numpy())
    for name in ("chorus", "wavenet"):
        with pytest.raises(ExportError, match="impulse response holds a linear time-invariant effect"):
            export_model(make(name), "ir", tmp_path / "x.wav", meta())


def test_cnn_compressor_and_pvpitch_have_no_streaming_export(tmp_path):
    compressor = build_model({"family": "compressor", "sample_rate": SR})
    pvpitch = build_model({"family": "pvpitch", "n_fft": 64, "hop": 8})
    for fmt in ("onnx", "torchscript"):
        with pytest.raises(ExportError, match="phase-vocoder stream.*Formats this model can use: none"):
            export_model(pvpitch, fmt, tmp_path / "m", meta())
        with pytest.raises(ExportError, match="pooling window.*Formats this model can use: none"):
            export_model(make("cnn"), fmt, tmp_path / "m", meta())
        with pytest.raises(ExportError, match="per-sample recursion run by numba.*Formats this model can use: none"):
            export_model(compressor, fmt, tmp_path / "m", meta())


def test_bad_metadata_and_format():
    with pytest.raises(ExportError, match="gear type 'guitar' is not one of NAM's"):
        meta(gear_type="guitar")
    with pytest.raises(ExportError, match="unknown export format 'wav'"):
        export_model(make("lstm"), "wav", "x", meta())
    assert issubclass(ExportError, FxdistError)


# --- CLI ---------------------------------------------------------------------------------------------


def _checkpoint(tmp_path, name):
    model = make(name)
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, Checkpoint(model_config=model_config_dict(model), model_state=model.state_dict(),
                                     sample_rate=SR, receptive_field=model.receptive_field, best_val_esr=0.02,
                                     metadata={"effect_id": "fuzz"}))
    return path


def test_cli_export_writes_measured_metadata(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "wavenet-nam")
    out = tmp_path / "fuzz.nam"
    assert cli_main(["export", str(ckpt), "--format", "nam", "-o", str(out), "--gear-type", "pedal",
                     "--name", "My Fuzz"]) == 0
    printed = capsys.readouterr().out
    assert "max abs error" in printed
    m = json.loads(out.read_text())["metadata"]
    assert m["name"] == "My Fuzz" and m["gear_type"] == "pedal" and m["training"]["validation_esr"] == 0.02
    assert isinstance(m["loudness"], float) and 0.0 <= m["gain"] <= 1.0


def test_cli_choices_match_the_library():
    import fxdist.cli.export as cli
    import fxdist.export as lib

    assert cli.FORMATS == lib.FORMATS and cli.NAM_GEAR_TYPES == lib.NAM_GEAR_TYPES
    assert cli.NAM_TONE_TYPES == lib.NAM_TONE_TYPES and cli.NAM_VERSIONS == tuple(lib.NAM_VERSIONS)


def test_cli_export_refusal_is_one_line(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "tcn")
    assert cli_main(["export", str(ckpt), "--format", "nam", "-o", str(tmp_path / "x.nam")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fxdist: error: cannot export a tcn model as nam") and "onnx" in err
