"""A blind ABX listening test of a model against its effect, served on 127.0.0.1.

Protocol. Each trial plays A and B: the clean input and the effect's output for one
excerpt, in a random order per trial. X is either the model's output for that excerpt
(a *model* trial) or an exact copy of A or B (a *control* trial). The listener answers
"X is A" or "X is B", i.e. which of the two X sounds like. A model that has learnt the
effect is heard as the effect; controls have a right answer and show whether the
listener was attentive. At the end: share of model trials judged as the effect, share of
controls right, and the one-sided binomial p-value of "the model is judged as the effect
more often than chance (1/2)".

Blindness. Audio URLs are ``/audio/<token>/<A|B|X>.wav`` with a random token per trial;
neither the page nor the URLs nor the /state answers say which file is clean, effect or
model, or whether a trial is a control. The key lives in server memory and in the results
JSON in the session folder, which is never served. The seed fixes the design (order, A/B
sides, which trials are controls); the tokens are always fresh.

Levels. The three versions of one excerpt share one gain that puts their joint peak at
``peak_dbfs``, so their relative loudness is kept (a louder effect stays louder).

Modules: ``design`` (config, excerpts, trials), ``session`` (audio on disk, answers,
results), ``server`` (HTTP and ``run_abx``), ``page`` (the listening page).
"""

from fxdist.abx.design import (
    ROLES,
    AbxConfig,
    AbxTrial,
    Source,
    cut_excerpts,
    excerpt,
    load_tracks,
    make_trials,
    pick_starts,
)
from fxdist.abx.server import AbxServer, run_abx, serve
from fxdist.abx.session import AbxSession, StaleAnswer

__all__ = [
    "ROLES",
    "AbxConfig",
    "AbxServer",
    "AbxSession",
    "AbxTrial",
    "Source",
    "StaleAnswer",
    "cut_excerpts",
    "excerpt",
    "load_tracks",
    "make_trials",
    "pick_starts",
    "run_abx",
    "serve",
]
