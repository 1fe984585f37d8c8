"""Every option of every command says what it does, and stated defaults are the real ones."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from fxdist.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}".strip())
    yield prefix, parser


def test_every_option_has_help():
    missing = []
    for name, parser in _commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            if not (action.help or "").strip():
                missing.append(f"fxdist {name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "options without help:\n" + "\n".join(missing)


def test_generate_help_states_the_config_defaults():
    from fxdist.data.generate import GenerateConfig

    parser = dict(_commands(build_parser()))["data generate"]
    helps = {a.dest: a.help for a in parser._actions}
    defaults = GenerateConfig()
    for dest, key in (("tracks", "tracks"), ("segments", "segments_per_track"), ("seed", "seed"), ("sample_rate", "sample_rate")):
        stated = re.search(r"\(default (\d+)\)", helps[dest])
        assert stated and int(stated.group(1)) == getattr(defaults, key), (dest, helps[dest])


def test_the_generate_example_config_exists_and_holds_the_defaults():
    from fxdist.config import load
    from fxdist.data.generate import GenerateConfig

    parser = dict(_commands(build_parser()))["data generate"]
    named = re.search(r"(configs/\S+\.yaml)", {a.dest: a.help for a in parser._actions}["config"]).group(1)
    assert load(GenerateConfig, REPO / named) == GenerateConfig()


def test_capture_help_states_the_library_defaults():
    from fxdist.capture import CANDIDATES, CaptureConfig
    from fxdist.cli import capture as cli_capture

    assert cli_capture.DEFAULT_BUDGET == CaptureConfig().budget
    assert list(cli_capture.CANDIDATE_NAMES) == CaptureConfig().candidates
    assert set(cli_capture.CANDIDATE_NAMES) | set(cli_capture.OTHER_CANDIDATES) == set(CANDIDATES)
    helps = {a.dest: a.help for a in dict(_commands(build_parser()))["capture"]._actions}
    assert f"(default: {CaptureConfig().budget:.0f})" in helps["budget"]
