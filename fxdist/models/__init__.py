"""Model families (chorus, cnn, compressor, fcn, fir, grainpitch, hybrid, lstm, nebula, pvpitch, tcn, wavenet, wh) behind one interface and a registry.

>>> from fxdist.models import build_model
>>> model = build_model({"family": "lstm", "hidden_size": 8})
>>> model.receptive_field
1
"""

from fxdist.models.base import EffectModel, detach_state
from fxdist.models.registry import (
    build_model,
    build_model_from_yaml,
    families,
    get,
    model_config_dict,
    register,
    registered,
    unregister,
)

# Imported for their @register side effect.
from fxdist.models import chorus, cnn, compressor, fir, grainpitch, hybrid, lstm, nebula, pvpitch, tcn, wavenet, wh  # noqa: F401  isort: skip
from fxdist.models.mol import mol_mean, mol_nll, mol_sample

__all__ = [
    "EffectModel",
    "build_model",
    "build_model_from_yaml",
    "detach_state",
    "families",
    "get",
    "model_config_dict",
    "mol_mean",
    "mol_nll",
    "mol_sample",
    "register",
    "registered",
    "unregister",
]
