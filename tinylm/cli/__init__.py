"""The `tinylm` program: parses arguments, calls the library, prints. No logic of its own.

Sub-commands live in one module per stage of the pipeline (tokenizer, model, training,
quickstart) and are registered here. Errors from the `tinylm.errors` family become one
`error: ...` line and exit status 2; Ctrl-C exits with 130 and no traceback.
"""

from __future__ import annotations

import sys

import click

from tinylm.errors import TinylmError


class TinylmGroup(click.Group):
    """A click group that turns user-facing errors into one clear line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TinylmError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(1)


@click.group(cls=TinylmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tinylm")
def main():
    """tinylm: raw text -> byte-level BPE tokenizer -> token arrays -> Transformer LM -> samples.

    A typical run: `tinylm train-bpe` -> `tinylm encode` -> `tinylm train` -> `tinylm generate`,
    or `tinylm quickstart` for the whole pipeline on bundled data.
    """


def _register() -> None:
    import importlib

    for module in ("tokenizer_commands", "model_commands", "training_commands", "quickstart_command"):
        try:
            mod = importlib.import_module(f"tinylm.cli.{module}")
        except ModuleNotFoundError as exc:  # a stage not built yet
            if exc.name == f"tinylm.cli.{module}":
                continue
            raise
        for command in getattr(mod, "COMMANDS", []):
            main.add_command(command)


_register()
