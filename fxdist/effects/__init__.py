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

Modules: ``config`` (the typed config and finding a preset), ``cabinet`` (generated cabinet
IRs), ``stages`` (one callable per stage kind), ``chain`` (``Chain``, ``load_effect``).
"""

from fxdist.effects.cabinet import cabinet_ir
from fxdist.effects.chain import Chain, load_effect
from fxdist.effects.config import (
    EFFECT_KINDS,
    CabinetIRConfig,
    EffectConfig,
    EffectKind,
    StageConfig,
    effect_config_from_dict,
    load_effect_config,
    resolve_effect_path,
)
from fxdist.effects.stages import builtin_parameters, builtin_plugins

__all__ = [
    "EFFECT_KINDS", "CabinetIRConfig", "EffectKind", "StageConfig", "EffectConfig", "Chain",
    "cabinet_ir", "load_effect", "load_effect_config", "resolve_effect_path", "effect_config_from_dict",
    "builtin_plugins", "builtin_parameters",
]
