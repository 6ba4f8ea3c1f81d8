"""`tinylm export`: a run as a Hugging Face Llama folder, or as tinylm safetensors weights.

Only parsing and printing here; the work lives in tinylm.export.
"""

from __future__ import annotations

import click

# tinylm.export.FORMATS and DTYPES, repeated so that --help never imports torch
FORMATS = ("llama", "safetensors")
DTYPES = ("float32", "bfloat16", "float16")


@click.command()
@click.argument("run", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="Folder to write (created; files in it are replaced).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="llama",
    show_default=True,
    help="llama: a transformers LlamaForCausalLM folder; safetensors: tinylm's own weights (any model, ablations included) without pickle.",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float32",
    show_default=True,
    help="Weights written by --format llama (bfloat16/float16 halve the file; transformers loads them in that dtype).",
)
def export(run, out, fmt, dtype):
    """Export a run as a Hugging Face Llama folder (default) or as tinylm safetensors weights.

    RUN is a `tinylm train` run folder or its checkpoint.pt.

    --format llama writes config.json, generation_config.json, model.safetensors, tokenizer.json,
    tokenizer_config.json, vocab.json and merges.txt: `AutoModelForCausalLM.from_pretrained(OUT)`
    and `AutoTokenizer.from_pretrained(OUT)` load it. --format safetensors writes model.safetensors
    (tinylm parameter names, the model config in its metadata) and the tokenizer files;
    `tinylm.export.load_safetensors(OUT)` reads it back. Needs `pip install 'tinylm[hf]'`.
    """
    from tinylm.export import export as export_run

    folder = export_run(run, out, fmt, dtype)
    click.echo(f"wrote {fmt} export of {run} to {folder}")


COMMANDS = [export]
