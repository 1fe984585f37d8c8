"""The fxdist exception hierarchy.

Every error carries the offending values (file, key, number) in its message, so a
user can fix the input without reading the code.
"""


class FxdistError(Exception):
    """Base of every error fxdist raises on purpose."""


class ConfigError(FxdistError):
    """A configuration file or value is invalid (unknown key, wrong type, bad range)."""


class DataError(FxdistError):
    """Audio or paired data is unusable (unreadable, NaN, silent, misaligned, ...)."""


class EffectError(FxdistError):
    """An effect chain cannot be built or failed while rendering."""


class ShardError(FxdistError):
    """A Parquet shard set is inconsistent with its manifest (checksum, schema, rate)."""


class CheckpointError(FxdistError):
    """A checkpoint is missing, corrupt, or from another model/version."""


class ModelError(FxdistError):
    """A model cannot be built or used as asked (unknown family, window too short)."""


class TrainingError(FxdistError):
    """Training cannot go on (NaN loss, sample-rate mismatch)."""


class ExportError(FxdistError):
    """A model cannot be written in the asked format, or the written file does not match it."""


class ClusterError(FxdistError):
    """A sweep or cluster request cannot be satisfied (resources, storage, SLURM)."""
