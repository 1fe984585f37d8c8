"""The stages of a chain, one callable per stage kind: ``stage(x, sr, label) -> y``, (C, N) float32.

``builtin`` and ``vst3`` stages wrap a pedalboard plugin, ``cabinet_ir`` convolves a
generated IR, ``command`` runs an external program on temp WAV files.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fxdist.effects.cabinet import cabinet_ir
from fxdist.effects.config import CabinetIRConfig, StageConfig
from fxdist.errors import EffectError

STDERR_TAIL_CHARS = 1500


def builtin_plugins() -> dict[str, type]:
    """The pedalboard built-in effect classes usable as ``builtin`` stages, by name."""
    import pedalboard

    skip = {"Plugin", "PluginContainer", "Pedalboard", "Chain", "Mix", "ExternalPlugin",
            "VST3Plugin", "AudioUnitPlugin", "IIRFilter"}
    out = {}
    for name in dir(pedalboard):
        cls = getattr(pedalboard, name)
        if (not name.startswith("_") and name not in skip and isinstance(cls, type)
                and issubclass(cls, pedalboard.Plugin)
                and not issubclass(cls, (pedalboard.PluginContainer, pedalboard.ExternalPlugin))):
            out[name] = cls
    return out


def builtin_parameters(cls: type) -> dict[str, str]:
    """Parameter name -> declared type of a pedalboard class's ``__init__`` (from its signature doc)."""
    doc = ((cls.__init__.__doc__ or "").strip().splitlines() or [""])[0]
    inner = doc[doc.find("(") + 1 : doc.rfind(")")]
    params = {}
    for match in re.finditer(r"(?:^|,)\s*(\w+)\s*:\s*([\w.\[\], ]+?)(?=\s*=|\s*,\s*\w+\s*:|$)", inner):
        if match.group(1) != "self":
            params[match.group(1)] = match.group(2).strip()
    if not params:  # signature doc not parseable: fall back on the class's properties
        params = {k: "?" for k, v in vars(cls).items() if isinstance(v, property) and not k.startswith("_")}
    return params


def _resolve_enum(cls: type, type_name: str, value: Any) -> Any:
    """Turn an enum member name (YAML string) into the pybind enum value, else return ``value``."""
    if not isinstance(value, str):
        return value
    import pedalboard

    owner: Any = pedalboard
    for part in type_name.split(".")[1:]:  # pedalboard_native.LadderFilter.Mode
        owner = getattr(owner, part, None)
        if owner is None:
            return value
    members = getattr(owner, "__members__", None)
    if members is None:
        return value
    if value not in members:
        kind = type_name.split(".")[-1]
        raise EffectError(f"{cls.__name__}: {value!r} is not a {kind}; choose one of {', '.join(members)}")
    return members[value]


def _build_builtin(stage: StageConfig) -> Any:
    available = builtin_plugins()
    cls = available.get(stage.builtin)
    if cls is None:
        raise EffectError(f"unknown pedalboard built-in {stage.builtin!r}; available: {', '.join(sorted(available))}")
    declared = builtin_parameters(cls)
    unknown = sorted(set(stage.params) - set(declared))
    if unknown:
        raise EffectError(
            f"{stage.builtin}: unknown parameter(s) {', '.join(unknown)}; "
            f"{stage.builtin} takes: {', '.join(declared) or 'no parameters'}"
        )
    kwargs = {k: _resolve_enum(cls, declared[k], v) for k, v in stage.params.items()}
    try:
        return cls(**kwargs)
    except Exception as exc:
        signature = (cls.__init__.__doc__ or "").strip()
        raise EffectError(f"{stage.builtin}({kwargs}): cannot build ({exc}); signature: {signature}") from exc


def _build_vst3(stage: StageConfig) -> Any:
    import pedalboard

    path = Path(stage.vst3).expanduser()
    if not path.exists():
        raise EffectError(f"{path}: VST3 plugin not found")
    try:
        plugin = pedalboard.load_plugin(str(path))
    except Exception as exc:
        raise EffectError(f"{path}: cannot load as a VST3 plugin ({exc})") from exc
    names = sorted(plugin.parameters)
    unknown = sorted(set(stage.params) - set(names))
    if unknown:
        raise EffectError(f"{path}: unknown parameter(s) {', '.join(unknown)}; the plugin has: {', '.join(names) or 'none'}")
    for key, value in stage.params.items():
        try:
            setattr(plugin, key, value)
        except Exception as exc:
            raise EffectError(f"{path}: cannot set {key}={value!r} ({exc})") from exc
    return plugin


FREQUENCY_PARAMS = ("cutoff_frequency_hz", "cutoff_hz", "centre_frequency_hz")


class _PluginStage:
    """A pedalboard plugin (built-in or VST3), state reset on every call."""

    def __init__(self, plugin: Any, stage: StageConfig) -> None:
        self.plugin = plugin
        self.stage = stage

    def __call__(self, x: np.ndarray, sr: int, label: str) -> np.ndarray:
        for key in FREQUENCY_PARAMS if self.stage.kind == "builtin" else ():
            hz = self.stage.params.get(key)
            if isinstance(hz, (int, float)) and hz >= 0.5 * sr:
                # pedalboard's IIR filters go silent or blow up to Inf above Nyquist
                raise EffectError(
                    f"{label}: {self.stage.describe()} {key}={hz:g} Hz is at or above Nyquist "
                    f"({0.5 * sr:g} Hz) of this {sr} Hz audio"
                )
        try:
            return self.plugin.process(x, float(sr), reset=True)
        except Exception as exc:
            raise EffectError(f"{label}: {self.stage.describe()} failed ({exc})") from exc


class _CabinetStage:
    """Convolution with a generated cabinet IR, built (and gain-calibrated) once per rate."""

    def __init__(self, cfg: CabinetIRConfig) -> None:
        self.cfg = cfg
        self._by_rate: dict[int, tuple[Any, float]] = {}

    def __call__(self, x: np.ndarray, sr: int, label: str) -> np.ndarray:
        if sr not in self._by_rate:
            self._by_rate[sr] = self._build(sr)
        plugin, gain = self._by_rate[sr]
        return plugin.process(x, float(sr), reset=True) * np.float32(gain)

    def _build(self, sr: int) -> tuple[Any, float]:
        import pedalboard

        ir = cabinet_ir(sr, **dataclasses.asdict(self.cfg))
        plugin = pedalboard.Convolution(ir, 1.0, float(sr))
        # JUCE normalises loaded IRs; measure its scale on an impulse and undo it.
        probe = np.zeros((1, len(ir)), np.float32)
        probe[0, 0] = 1.0
        seen = plugin.process(probe, float(sr), reset=True)[0].astype(np.float64)
        gain = float(np.dot(seen, ir) / max(np.dot(seen, seen), 1e-30))
        return plugin, gain


class _CommandStage:
    """An external program reading ``{input}`` and writing ``{output}`` (no shell)."""

    def __init__(self, stage: StageConfig) -> None:
        self.stage = stage
        exe = stage.command[0]
        if shutil.which(exe) is None:
            raise EffectError(f"command `{shlex.join(stage.command)}`: program {exe!r} not found on PATH")

    def __call__(self, x: np.ndarray, sr: int, label: str) -> np.ndarray:
        import soundfile as sf

        st = self.stage
        shown = f"`{shlex.join(st.command)}`"
        with tempfile.TemporaryDirectory(prefix="fxdist-cmd-") as tmp:
            src, dst = Path(tmp) / "input.wav", Path(tmp) / "output.wav"
            sf.write(str(src), x.T, sr, subtype="FLOAT")
            argv = [_fill(a, src, dst, sr) for a in st.command]
            stderr = self._run(argv, label, shown)
            if not dst.is_file():
                raise EffectError(
                    f"{label}: command {shown} exited 0 but wrote no output file ({{output}}); stderr tail: {stderr}"
                )
            try:
                data, sr_out = sf.read(str(dst), dtype="float32", always_2d=True)
            except Exception as exc:
                raise EffectError(f"{label}: command {shown} wrote an unreadable output file ({exc})") from exc
        if sr_out != sr:
            raise EffectError(
                f"{label}: command {shown} wrote {sr_out} Hz audio for {sr} Hz input; fxdist does not resample effect output"
            )
        return self._fit_length(np.ascontiguousarray(data.T), x.shape[-1], label, shown)

    def _run(self, argv: list[str], label: str, shown: str) -> str:
        env = {**os.environ, **self.stage.env}
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env, start_new_session=True)
        except OSError as exc:
            raise EffectError(f"{label}: cannot start command {shown} ({exc})") from exc
        try:
            _, err = proc.communicate(timeout=self.stage.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
                pass
            raise EffectError(
                f"{label}: command {shown} timed out after {self.stage.timeout_s:g} s and was killed "
                f"(raise timeout_s in the stage config if it is only slow)"
            ) from None
        tail = err.decode(errors="replace")[-STDERR_TAIL_CHARS:].strip() or "(empty)"
        if proc.returncode != 0:
            code = proc.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
            raise EffectError(f"{label}: command {shown} {how}; stderr tail: {tail}")
        return tail

    def _fit_length(self, y: np.ndarray, n: int, label: str, shown: str) -> np.ndarray:
        m = y.shape[-1]
        if m == n:
            return y
        if m > n and (self.stage.trim_tail or m - n <= self.stage.length_tolerance):
            return np.ascontiguousarray(y[:, :n])
        if m < n and n - m <= self.stage.length_tolerance:
            return np.pad(y, ((0, 0), (0, n - m)))
        raise EffectError(
            f"{label}: command {shown} returned {m} samples for {n} input samples "
            f"(length_tolerance {self.stage.length_tolerance}, trim_tail {self.stage.trim_tail})"
        )


def _fill(arg: str, src: Path, dst: Path, sr: int) -> str:
    return arg.replace("{input}", str(src)).replace("{output}", str(dst)).replace("{sr}", str(sr))


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the command and anything it started (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _build_stage(stage: StageConfig) -> Any:
    if stage.kind == "builtin":
        return _PluginStage(_build_builtin(stage), stage)
    if stage.kind == "vst3":
        return _PluginStage(_build_vst3(stage), stage)
    if stage.kind == "cabinet_ir":
        return _CabinetStage(stage.cabinet_ir)
    return _CommandStage(stage)
