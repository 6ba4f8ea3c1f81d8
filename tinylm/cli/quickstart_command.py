"""`tinylm quickstart`: the whole pipeline (tokenizer -> token arrays -> model -> samples -> report)."""

from __future__ import annotations

import os
import shlex
import sys

import click

from tinylm.recipes import RECIPES


@click.command()
@click.option("--corpus", default=None, help="Your own corpus: a text file (documents separated by <|endoftext|>, e.g. TinyStories), .jsonl / .parquet shards (.gz/.bz2/.xz/.zst), a folder or quoted glob; default: the bundled public-domain corpus.")
@click.option("--text-field", default=None, help="JSON field / Parquet column of a JSON Lines or Parquet corpus (default: text).")
@click.option("--skip-bad-records", is_flag=True, default=None, help="Skip (and count) bad records of such a corpus instead of stopping.")
@click.option("--out", "out_dir", default="runs/quickstart", show_default=True, help="Folder for everything the run writes (report.html included).")
@click.option("--minutes", type=float, default=None, help="Training budget in minutes of wall-clock (default 7.5; the other stages add about a minute).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Train exactly this many steps instead of a time budget.")
@click.option("--max-corpus-mb", type=float, default=None, help="Read at most this much of --corpus (default 64, cut at a document boundary).")
@click.option("--vocab-size", type=int, default=None, help="Tokenizer vocabulary (default 4096).")
@click.option("--d-model", type=int, default=None, help="Model width (default 128).")
@click.option("--num-layers", "--layers", "num_layers", type=int, default=None, help="Transformer blocks (default: the recipe's quick-start setting, else 4; --layers is the old spelling).")
@click.option("--num-heads", "--heads", "num_heads", type=int, default=None, help="Attention heads (default 4; --heads is the old spelling).")
@click.option("--context-length", type=int, default=None, help="Tokens per training window (default 128).")
@click.option("--batch-size", type=int, default=None, help="Windows per step (default: the recipe's quick-start setting, else 32).")
@click.option("--lr", type=float, default=None, help="Peak learning rate, decaying to lr/10 over the budget (default: the recipe's quick-start setting, else 1e-2).")
@click.option("--eval-tokens", type=click.IntRange(min=1), default=None, help="Validation tokens scored in the final evaluation (default 131072).")
@click.option("--prompt", "prompts", multiple=True, help="Prompt for the samples (repeatable; default: five fixed prompts).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None, help="Tokens per sample (default 60).")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=None, help="Named recipe: tinylm (default), cs336 (the course baseline) or nanogpt; see docs/EXPERIMENTS.md §8.")
@click.option("--device", default=None, help="cpu (default), cuda, cuda:N or mps.")
@click.option("--seed", type=int, default=None, help="Seed for initialisation, batches and sampling (default 0).")
@click.option("--workers", "-j", type=int, default=None, help="Processes for tokenizer training and encoding (default: all cores).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
def quickstart(prompts, **flags):
    """Raw text to a model that writes, in one command, offline: train a BPE tokenizer, encode train
    and validation text, train a small Transformer LM for a fixed time, evaluate it (loss per token
    and bits per byte), print samples, and write a self-contained report.html.

    \b
    Examples:
      tinylm quickstart                                   (bundled corpus, CPU, about 8 minutes)
      tinylm quickstart --minutes 1 --out runs/qs-short
      tinylm quickstart --corpus TinyStoriesV2-GPT4-train.txt --device cuda --d-model 512 --num-layers 4 --num-heads 16
    """
    from tinylm.quickstart import QuickstartConfig, run_quickstart

    names = {
        "corpus": "corpus", "text_field": "text_field", "skip_bad_records": "skip_bad_records", "out_dir": "out_dir", "minutes": "minutes", "max_steps": "max_steps",
        "max_corpus_mb": "max_corpus_mb", "vocab_size": "vocab_size", "d_model": "d_model",
        "num_layers": "num_layers", "num_heads": "num_heads", "context_length": "context_length",
        "batch_size": "batch_size", "lr": "lr", "eval_tokens": "eval_tokens", "max_new_tokens": "max_new_tokens", "device": "device", "recipe": "recipe",
        "seed": "seed", "workers": "workers", "progress": "progress",
    }
    kwargs = {field: flags[flag] for flag, field in names.items() if flags.get(flag) is not None}
    if prompts:
        kwargs["prompts"] = list(prompts)
    config = QuickstartConfig(**kwargs)
    command = _command_line(flags, prompts)
    result = run_quickstart(config, command=command, echo=click.echo)
    click.echo(f"report: {result.out_dir / 'report.html'}")


def _command_line(flags: dict, prompts) -> str:
    """The command as typed when run as `tinylm`, else rebuilt from the flags that were given."""
    if sys.argv and os.path.basename(sys.argv[0]) in ("tinylm", "__main__.py") and "quickstart" in sys.argv[1:]:
        return "tinylm " + shlex.join(sys.argv[1:])
    words = ["tinylm", "quickstart"]
    for name, value in flags.items():
        if value is None:
            continue
        flag = "--" + {"out_dir": "out", "num_layers": "layers", "num_heads": "heads"}.get(name, name).replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, str(value)]
    for prompt in prompts:
        words += ["--prompt", prompt]
    return shlex.join(words)


COMMANDS = [quickstart]
