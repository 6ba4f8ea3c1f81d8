"""The `tinylm` program: parses arguments, calls the library, prints. No logic of its own.

Sub-commands live in one module per stage of the pipeline (tokenizer, model, training,
quickstart) and are registered here. Errors from the `tinylm.errors` family become one
`error: ...` line and exit status 2; Ctrl-C exits with 130 and no traceback.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from tinylm.errors import TinylmError


# Sub-command -> the module that defines it (in its COMMANDS list). Modules are imported only
# when their command runs, so `tinylm train-bpe` never pays for importing torch.
_COMMAND_MODULES = {
    "train-bpe": "tokenizer_commands",
    "encode": "tokenizer_commands",
    "tokenizer-stats": "tokenizer_commands",
    "accounting": "model_commands",
    "train": "training_commands",
    "generate": "training_commands",
    "sweep": "training_commands",
    "quickstart": "quickstart_command",
    "export": "export_command",
}


class TinylmGroup(click.Group):
    """A click group with lazily imported sub-commands and one-line user errors."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_COMMAND_MODULES))

    def get_command(self, ctx, name):
        module = _COMMAND_MODULES.get(name)
        if module is None:
            return super().get_command(ctx, name)
        import importlib

        if module == "tokenizer_commands" and "numpy" not in sys.modules:
            # Tokenizer commands do no linear algebra; NumPy's OpenBLAS would start a thread per core
            # that spins at start-up, taking CPU the encoder and counter threads want (measured:
            # `tinylm encode` of 20 MB on 2 cores, 0.15-0.2 s more CPU). The user's setting wins.
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        try:
            mod = importlib.import_module(f"tinylm.cli.{module}")
        except ModuleNotFoundError as exc:  # a stage not built in this checkout
            if exc.name == f"tinylm.cli.{module}":
                return None
            raise
        return next((c for c in getattr(mod, "COMMANDS", []) if c.name == name), None)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TinylmError as exc:
            if not getattr(exc, "reported", False):  # a multi-process failure prints its line at once
                click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except BrokenPipeError:  # output piped into `head` and closed: not an error worth a line
            sys.exit(1)
        except OSError as exc:  # a write that no library code wrapped (a log line, a plot) on a full or read-only disk
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            click.echo(f"error: cannot write {exc.filename or 'output'}: {exc.strerror}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=TinylmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tinylm")
def main():
    """tinylm: raw text -> byte-level BPE tokenizer -> token arrays -> Transformer LM -> samples.

    A typical run: `tinylm train-bpe` -> `tinylm encode` -> `tinylm train` -> `tinylm generate`,
    or `tinylm quickstart` for the whole pipeline on bundled data.
    """
