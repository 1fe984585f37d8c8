"""`fxdist export`: write a trained checkpoint in a player's format, numerically verified."""

from __future__ import annotations

import argparse
import json

# Copies of fxdist.export's constants (importing it here would load torch for every command).
FORMATS = ("nam", "onnx", "torchscript", "rtneural", "ir")
NAM_GEAR_TYPES = ("amp", "pedal", "pedal_amp", "amp_cab", "amp_pedal_cab", "preamp", "studio")
NAM_TONE_TYPES = ("clean", "overdrive", "crunch", "hi_gain", "fuzz")
NAM_VERSIONS = ("0.5", "0.7")
FAMILY_TABLE = "<formats by model family>"  # the epilog, replaced by fxdist.export.format_table() when shown


class _HelpWithTable(argparse.HelpFormatter):
    """Builds the family-by-format table only when help is shown (it imports torch and the models)."""

    def add_text(self, text):
        if text != FAMILY_TABLE:
            return super().add_text(text)
        from fxdist.export import format_table

        table = format_table(markdown=True)
        self._add_item(lambda t: t + "\n\n", [f"Formats by model family (a setting in a cell is what that format needs):\n{table}"])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to NAM, ONNX, TorchScript, RTNeural (AIDA-X) or an impulse response WAV",
        description="Export a trained checkpoint to a player's format; the file is read back and its "
        "output compared with the model's (max abs error printed).",
        epilog=FAMILY_TABLE,
        formatter_class=_HelpWithTable,
    )
    p.add_argument("model", help="checkpoint (.pt) written by fxdist train")
    p.add_argument("--format", required=True, choices=FORMATS, help="output format")
    p.add_argument("-o", "--output", required=True, help="output file (.nam, .onnx, .pt, .json, .wav)")
    p.add_argument("--name", help="model name shown by players (default: effect id or file stem)")
    p.add_argument("--gear-type", choices=NAM_GEAR_TYPES, help="NAM gear type")
    p.add_argument("--gear-make", help="make of the modelled gear")
    p.add_argument("--gear-model", help="model of the modelled gear")
    p.add_argument("--tone-type", choices=NAM_TONE_TYPES, help="NAM tone type")
    p.add_argument("--modeled-by", help="who made the model")
    p.add_argument("--nam-version", default="0.5", choices=NAM_VERSIONS,
                   help=".nam file version: 0.5 (0.5.4, every NAM plugin) or 0.7 (0.7.0, neural-amp-modeler >= 0.13)")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from fxdist.export import export_checkpoint

    report = export_checkpoint(
        args.model, args.format, args.output, name=args.name, gear_type=args.gear_type, gear_make=args.gear_make,
        gear_model=args.gear_model, tone_type=args.tone_type, modeled_by=args.modeled_by, nam_version=args.nam_version,
    )
    print(f"{report.path}: {report.format} export of a {report.family} model; read back and compared on "
          f"{report.checked_samples} samples: max abs error {report.max_abs_error:.3g}")
    for note in report.notes:
        print(f"note: {note}")
    print(json.dumps(report.metadata, indent=2))
    return 0
