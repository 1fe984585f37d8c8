"""Refusing a sweep folder that someone else could have written, before Ray Tune unpickles it.

``Tuner.restore`` and ``ExperimentAnalysis`` unpickle the experiment folder's driver state:
``tuner.pkl``, the search and callback state pickles, the cloudpickled fields inside
``experiment_state-*.json``, and a trial's ``error.pkl``. Whoever can write one of them can
run code as the user who resumes the sweep, lists it or picks its best trial. So the folder,
the folders holding those files and the files themselves must be owned by the current user
and not writable by group or others, unless the caller trusts them (``trust=True``,
``--trust``).

Only local folders (and ``file://`` URIs) have owners and modes to check; an object store's
bucket policy decides who can write there.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
import stat
from collections.abc import Iterator

import pyarrow.fs as pafs

from fxdist import storage
from fxdist.errors import ClusterError
from fxdist.tune.state import STATE_BACKUP_DIR, STATE_BACKUP_FILE, STATE_FILES

# Files in the experiment folder that Ray unpickles.
EXPERIMENT_PICKLES = ("tuner.pkl", *(pattern for pattern, _fmt, _what in STATE_FILES))
# The file in its STATE_BACKUP_DIR: a set of those state files that resume puts back for Ray.
BACKUP_PICKLES = (STATE_BACKUP_FILE,)
# Files in each trial folder that Ray unpickles (error.pkl) or could (params.pkl).
TRIAL_PICKLES = ("*.pkl",)


class UntrustedExperiment(ClusterError):
    """A sweep folder (or a file in it that Ray unpickles) that someone else could have written."""


def check_trusted(experiment_path: str, trust: bool = False) -> None:
    """UntrustedExperiment for the first folder or file in ``experiment_path`` that Ray unpickles
    and that is not owned by the current user or is writable by group or others.

    ``trust=True`` skips the check; so does storage without POSIX owners (object stores).
    """
    if trust:
        return
    fs, root = storage.resolve(experiment_path)
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    for path in _unpickled_paths(root):
        why = _why_untrusted(path)
        if why:
            raise UntrustedExperiment(_message(experiment_path, path, why))


def _unpickled_paths(root: str) -> Iterator[str]:
    """The experiment folder, the folders below it that hold unpickled files, and those files."""
    yield root
    for folder, patterns in _state_folders(root):
        if folder != root:
            yield folder
        for name in sorted(os.listdir(folder)):
            if any(fnmatch.fnmatch(name, p) for p in patterns):
                yield os.path.join(folder, name)


def _state_folders(root: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    yield root, EXPERIMENT_PICKLES
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir():  # follows links: a linked folder is checked, link and target
            continue
        if entry.name == STATE_BACKUP_DIR:
            yield entry.path, BACKUP_PICKLES
        elif entry.is_symlink() or os.path.isfile(os.path.join(entry.path, "params.json")):
            yield entry.path, TRIAL_PICKLES  # a trial folder (or a link posing as one)


def _why_untrusted(path: str) -> str | None:
    """Why ``path`` (and, for a symlink, what it points at) may hold someone else's code; None if it cannot."""
    for follow in (False, True):
        try:
            st = os.stat(path, follow_symlinks=follow)
        except FileNotFoundError:
            return None if not follow else "a link to nothing"
        what = "what the link points at" if follow and os.path.islink(path) else "it"
        if st.st_uid != os.geteuid():
            return f"{what} is owned by {_user(st.st_uid)}, not by you ({_user(os.geteuid())}), mode {stat.filemode(st.st_mode)}"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not stat.S_ISLNK(st.st_mode):
            who = " and ".join(w for bit, w in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "others")) if st.st_mode & bit)
            return f"{what} is writable by {who} (owner {_user(st.st_uid)}, mode {stat.filemode(st.st_mode)})"
    return None


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _message(exp: str, path: str, why: str) -> str:
    return (
        f"{path}: {why}. Ray Tune unpickles this sweep's state from {exp}, so whoever can write there can run "
        f"code as you. Fix: make it yours and writable only by you (`chmod -R go-w {exp}`), or pass --trust "
        f"(trust=True) if you trust everyone who can write there"
    )
