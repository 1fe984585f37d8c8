"""Effect chains built from YAML configs, called like pedalboard: ``chain(x, sr) -> y``.

An effect config names an effect and lists its stages, applied in order::

    name: amp_cab                 # effect id, [a-z0-9_-]+
    family: amp_cab               # effect kind: distortion fuzz compression amp_cab highpass lowpass
                                  # pitch chorus delay reverb other
    description: preamp drive, tone filters, generated 1x12 cabinet
    chain:
      - builtin: Distortion       # a pedalboard built-in plugin, by class name
        params: {drive_db: 30}
      - cabinet_ir: {seed: 3, length_ms: 40}    # generated cabinet IR (pedalboard.Convolution)
      - vst3: /path/to/Plugin.vst3              # a VST3 plugin, parameters set by name
        params: {gain_db: 3}
      - command: [sox, "{input}", "{output}", overdrive, "20"]   # an external program
        timeout_s: 60

Audio is float32 (C, N), channels first. Each stage kind:

- ``builtin``: ``pedalboard.<Class>(**params)``. Unknown classes or parameters raise
  EffectError listing what exists. A string value for an enum parameter is looked up by
  member name (``LadderFilter`` ``mode: HPF24``).
- ``cabinet_ir``: ``pedalboard.Convolution`` of the IR that :func:`cabinet_ir` generates for
  the stage's settings at the rate being processed. JUCE rescales every IR it loads; the
  stage undoes that, so the IR's own gain holds (0 dB mean over its pass band).
- ``vst3``: ``pedalboard.load_plugin(path)``, then each param set as a plugin attribute.
- ``command``: run without a shell, with ``{input}``, ``{output}`` and ``{sr}`` replaced by
  a temp FLOAT WAV of the stage input, the path the program must write, and the rate. The
  program is killed after ``timeout_s``. Its output must have the input's rate (never
  resampled) and length; ``length_tolerance`` samples of difference are padded with zeros
  or trimmed, and ``trim_tail: true`` also cuts any longer output (a tail that rings past
  the input, e.g. sox ``echo``) to the input length.

A chain keeps the input length: pedalboard compensates the latency its plugins report
(PitchShift) and every stage's output length is checked. Mono in gives (1, N) out: a stage
that answers mono with several channels (a stereo VST3, say) is averaged back to mono at the
end of the chain. Plugin state is reset before each call, so every call renders on its own
and the same input always gives the same output.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fxdist.config import from_dict, load_yaml, to_dict
from fxdist.errors import EffectError
from fxdist.presets import effect_preset

# The effect kinds an effect config's ``family`` key may name.
EffectKind = Literal[
    "distortion", "fuzz", "compression", "amp_cab", "highpass", "lowpass",
    "pitch", "chorus", "delay", "reverb", "other",
]
EFFECT_KINDS: tuple[str, ...] = typing.get_args(EffectKind)
EFFECT_NAME = re.compile(r"^[a-z0-9_-]+$")
STAGE_KINDS = ("builtin", "cabinet_ir", "vst3", "command")
COMMAND_DEFAULTS = {"timeout_s": 60.0, "env": {}, "length_tolerance": 0, "trim_tail": False}
STDERR_TAIL_CHARS = 1500


# --------------------------------------------------------------------------- config


@dataclass
class CabinetIRConfig:
    """Settings of a generated cabinet impulse response (see :func:`cabinet_ir`)."""

    seed: int = 0
    length_ms: float = 40.0
    low_hz: float = 80.0
    high_hz: float = 4500.0
    resonances: int = 4
    decay_ms: float = 6.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.length_ms <= 1000.0:
            raise ValueError(f"cabinet_ir.length_ms must be in [1, 1000], got {self.length_ms}")
        if not 0.0 < self.low_hz < self.high_hz:
            raise ValueError(f"cabinet_ir needs 0 < low_hz < high_hz, got low_hz={self.low_hz}, high_hz={self.high_hz}")
        if not 0 <= self.resonances <= 16:
            raise ValueError(f"cabinet_ir.resonances must be in [0, 16], got {self.resonances}")
        if not 0.1 <= self.decay_ms <= self.length_ms:
            raise ValueError(f"cabinet_ir.decay_ms must be in [0.1, length_ms={self.length_ms}], got {self.decay_ms}")


@dataclass
class StageConfig:
    """One stage of a chain: exactly one of builtin / cabinet_ir / vst3 / command.

    ``params`` belongs to builtin and vst3 stages; ``timeout_s``, ``env``,
    ``length_tolerance`` and ``trim_tail`` to command stages.
    """

    builtin: str | None = None
    cabinet_ir: CabinetIRConfig | None = None
    vst3: str | None = None
    command: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 60.0
    env: dict[str, str] = field(default_factory=dict)
    length_tolerance: int = 0
    trim_tail: bool = False

    def __post_init__(self) -> None:
        given = [k for k in STAGE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a stage needs exactly one of {', '.join(STAGE_KINDS)}; got {given or 'none'}")
        if self.params and self.kind not in ("builtin", "vst3"):
            raise ValueError(f"params belong to builtin and vst3 stages, not to a {self.kind} stage")
        stray = [k for k, default in COMMAND_DEFAULTS.items() if getattr(self, k) != default]
        if stray and self.kind != "command":
            raise ValueError(f"{', '.join(stray)} belong(s) to command stages, not to a {self.kind} stage")
        if self.kind == "command":
            if not self.command:
                raise ValueError("command stage: the command list is empty")
            joined = " ".join(self.command)
            missing = [p for p in ("{input}", "{output}") if p not in joined]
            if missing:
                raise ValueError(f"command {self.command}: missing placeholder(s) {', '.join(missing)}")
        if not 0 < self.timeout_s <= 86400:
            raise ValueError(f"timeout_s must be in (0, 86400], got {self.timeout_s}")
        if self.length_tolerance < 0:
            raise ValueError(f"length_tolerance must be >= 0, got {self.length_tolerance}")

    @property
    def kind(self) -> str:
        return next(k for k in STAGE_KINDS if getattr(self, k) is not None)

    def describe(self) -> str:
        """Short label for messages: ``builtin Distortion``, ``command sox ...``."""
        if self.kind == "command":
            return f"command `{shlex.join(self.command)}`"
        if self.kind == "cabinet_ir":
            return f"cabinet_ir seed={self.cabinet_ir.seed}"
        return f"{self.kind} {getattr(self, self.kind)}"

    def to_dict(self) -> dict[str, Any]:
        """Only the keys that matter for this kind (what a user would write)."""
        out: dict[str, Any] = {self.kind: to_dict(getattr(self, self.kind))}
        if self.kind in ("builtin", "vst3"):
            out["params"] = dict(self.params)
        if self.kind == "command":
            out.update(timeout_s=self.timeout_s, env=dict(self.env),
                       length_tolerance=self.length_tolerance, trim_tail=self.trim_tail)
        return out


@dataclass
class EffectConfig:
    """An effect: its id, its effect kind (YAML key ``family``), a description and its stages in order."""

    name: str
    chain: list[StageConfig]
    family: EffectKind = "other"
    description: str = ""

    def __post_init__(self) -> None:
        if not EFFECT_NAME.match(self.name):
            raise ValueError(f"effect name {self.name!r} must match [a-z0-9_-]+ (it names folders)")
        if not self.chain:
            raise ValueError(f"effect {self.name!r}: chain is empty")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "chain": [s.to_dict() for s in self.chain],
        }


def effect_config_from_dict(data: Any, source: str = "<effect>") -> EffectConfig:
    """Build an EffectConfig strictly; errors name ``source`` and the key path."""
    return from_dict(EffectConfig, data, source)


def load_effect_config(name_or_path: str | Path) -> EffectConfig:
    """Resolve a preset name (:func:`fxdist.presets.effect_preset`) or a YAML path to its config.

    A value with a path separator or a .yaml/.yml suffix, or naming an existing file,
    is a path; anything else a preset name. Unknown names raise EffectError listing the
    shipped presets.
    """
    path = resolve_effect_path(name_or_path)
    return effect_config_from_dict(load_yaml(path), source=str(path))


def resolve_effect_path(name_or_path: str | Path) -> Path:
    """The YAML file of a preset name or path (rules in :func:`load_effect_config`)."""
    text = str(name_or_path)
    path = Path(text)
    is_path = isinstance(name_or_path, Path) or os.sep in text or path.suffix in (".yaml", ".yml") or path.is_file()
    if not is_path:
        path = effect_preset(text)
    elif not path.is_file():
        raise EffectError(f"{path}: effect config file not found")
    return path


# --------------------------------------------------------------------------- cabinet IR


def cabinet_ir(
    sr: int,
    seed: int = 0,
    length_ms: float = 40.0,
    low_hz: float = 80.0,
    high_hz: float = 4500.0,
    resonances: int = 4,
    decay_ms: float = 6.0,
) -> np.ndarray:
    """A plausible guitar-cabinet impulse response, float32 (N,), N = length_ms * sr / 1000.

    Magnitude: 2nd-order high-pass at ``low_hz`` times 6th-order low-pass at ``high_hz``
    (a speaker's steep top roll-off, -36 dB/octave), a low "thump" resonance at 90-160 Hz,
    a mid dip at 350-800 Hz and ``resonances`` cone peaks at 1-4.5 kHz (+3..+9 dB), all
    drawn from ``seed``. Its minimum-phase impulse (energy up front, no delay) plus a noise
    tail decaying with time constant ``decay_ms`` and shaped by the same magnitude; faded
    out over the last 10 %. Scaled to 0 dB mean power gain over the pass band
    [low_hz, min(high_hz, 0.45 sr)], so its loudness hardly depends on the rate.
    Deterministic in its arguments.
    """
    n = max(16, int(round(length_ms * sr / 1000)))
    nfft = 1 << int(math.ceil(math.log2(4 * n)))
    f = np.fft.rfftfreq(nfft, 1.0 / sr)
    rng = np.random.default_rng(seed)
    mag = _cabinet_magnitude(f, rng, low_hz, high_hz, resonances)

    body = _minimum_phase(mag, nfft)[:n]
    t = np.arange(n) / sr
    noise = rng.standard_normal(n) * np.exp(-t / (decay_ms / 1000))
    tail = np.fft.irfft(np.fft.rfft(noise, nfft) * mag, nfft)[:n]
    ir = body + 0.3 * tail * (np.linalg.norm(body) / max(np.linalg.norm(tail), 1e-12))

    fade = max(1, n // 10)
    ir[-fade:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    power = np.abs(np.fft.rfft(ir, nfft)) ** 2
    passband = (f >= low_hz) & (f <= min(high_hz, 0.45 * sr))
    return (ir / np.sqrt(np.mean(power[passband]))).astype(np.float32)


def _cabinet_magnitude(
    f: np.ndarray, rng: np.random.Generator, low_hz: float, high_hz: float, resonances: int
) -> np.ndarray:
    """Linear magnitude on frequency grid ``f`` (Hz): band-pass times resonant bumps."""
    hp = (f / low_hz) ** 2 / np.sqrt(1 + (f / low_hz) ** 4)
    lp = 1 / np.sqrt(1 + (f / high_hz) ** 12)
    logf = np.log2(np.maximum(f, 1.0))

    def bump(centre_hz: float, gain_db: float, width_oct: float) -> np.ndarray:
        return gain_db * np.exp(-0.5 * ((logf - np.log2(centre_hz)) / width_oct) ** 2)

    shape_db = bump(rng.uniform(90, 160), rng.uniform(3, 6), 0.3)
    shape_db += bump(rng.uniform(350, 800), -rng.uniform(3, 6), 0.6)
    for _ in range(resonances):
        shape_db += bump(np.exp(rng.uniform(np.log(1000), np.log(4500))), rng.uniform(3, 9), rng.uniform(0.08, 0.25))
    return hp * lp * 10 ** (shape_db / 20)


def _minimum_phase(mag: np.ndarray, nfft: int) -> np.ndarray:
    """Minimum-phase impulse (nfft,) with rfft magnitude ``mag`` (homomorphic method)."""
    cep = np.fft.irfft(np.log(np.maximum(mag, 1e-6)), nfft)
    fold = np.zeros(nfft)
    fold[0] = 1
    fold[1 : nfft // 2] = 2
    fold[nfft // 2] = 1
    return np.fft.irfft(np.exp(np.fft.rfft(cep * fold, nfft)), nfft)


# --------------------------------------------------------------------------- stages


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


# --------------------------------------------------------------------------- chain


class Chain:
    """An effect chain: ``chain(x, sr) -> y``, x float32 (C, N) (or (N,), read as (1, N)).

    Returns float32 (C', N): same length; (1, N) for mono input. Build it with
    :meth:`from_config` or :func:`load_effect`; rebuild it in other processes from
    :meth:`to_dict` rather than pickling plugins.
    """

    def __init__(self, config: EffectConfig, source: str = "<effect>") -> None:
        self.config = config
        self.source = source
        self._stages = []
        for i, stage in enumerate(config.chain):
            try:
                self._stages.append(_build_stage(stage))
            except EffectError as exc:
                raise EffectError(f"{source}: effect {config.name!r} chain[{i}]: {exc}") from exc

    @classmethod
    def from_config(cls, config: EffectConfig | dict[str, Any], source: str = "<effect>") -> Chain:
        """Build from an EffectConfig or its plain-data form; ``source`` names it in errors."""
        if isinstance(config, dict):
            config = effect_config_from_dict(config, source)
        return cls(config, source)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def effect_kind(self) -> str:
        """The config's ``family`` key: distortion, fuzz, delay, ... (see ``EFFECT_KINDS``)."""
        return self.config.family

    def to_dict(self) -> dict[str, Any]:
        """Plain data of the effect config (for manifests and ``effect.yaml``)."""
        return self.config.to_dict()

    def __repr__(self) -> str:
        return f"Chain({self.name!r}: {' -> '.join(s.describe() for s in self.config.chain)})"

    def __call__(self, x: np.ndarray, sr: int, label: str = "<audio>") -> np.ndarray:
        """Apply every stage; ``label`` (a track name) goes into error messages."""
        y = np.asarray(x, dtype=np.float32)
        if y.ndim == 1:
            y = y[None, :]
        if y.ndim != 2 or y.shape[1] == 0:
            raise EffectError(f"{label}: effect {self.name} needs (C, N) audio with N > 0, got shape {np.shape(x)}")
        if isinstance(sr, (float, np.floating)) and float(sr).is_integer():
            sr = int(sr)
        if not (isinstance(sr, (int, np.integer)) and sr > 0):
            raise EffectError(f"{label}: sample rate must be a positive integer, got {sr!r}")
        channels, n = y.shape
        y = np.ascontiguousarray(y)
        for i, (stage, cfg) in enumerate(zip(self._stages, self.config.chain)):
            y = np.asarray(stage(y, int(sr), label), dtype=np.float32)
            if y.ndim != 2 or y.shape[1] != n:
                raise EffectError(
                    f"{label}: effect {self.name} stage {i} ({cfg.describe()}) returned shape {y.shape} "
                    f"for input of {n} samples"
                )
        if channels == 1 and y.shape[0] > 1:
            y = y.mean(axis=0, keepdims=True)
        return np.ascontiguousarray(y, dtype=np.float32)


def load_effect(name_or_path: str | Path | EffectConfig | Chain) -> Chain:
    """A Chain from a preset name, a YAML path, an EffectConfig or a Chain (returned as is)."""
    if isinstance(name_or_path, Chain):
        return name_or_path
    if isinstance(name_or_path, EffectConfig):
        return Chain(name_or_path)
    path = resolve_effect_path(name_or_path)
    return Chain(effect_config_from_dict(load_yaml(path), source=str(path)), source=str(path))


__all__ = [
    "EFFECT_KINDS", "CabinetIRConfig", "StageConfig", "EffectConfig", "Chain",
    "cabinet_ir", "load_effect", "load_effect_config", "resolve_effect_path", "effect_config_from_dict",
    "builtin_plugins", "builtin_parameters",
]
