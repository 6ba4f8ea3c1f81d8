"""`tinylm accounting`: parameters, FLOPs and training memory of a model config, as tables.

Only parsing and printing here; the sums live in tinylm.model.accounting.
"""

from __future__ import annotations

import json

import click

from tinylm.model import accounting as acc
from tinylm.model.config import FFNS, NORMS, POSITIONS

SCALING_LENGTHS = (256, 1_024, 4_096, 16_384)


def _table(headers, rows, align=None) -> str:
    """Plain-text table; columns after the first two are right-aligned (numbers)."""
    align = align or ["<", "<"] + [">"] * (len(headers) - 2)
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = "  ".join(f"{{:{a}{w}}}" for a, w in zip(align, widths))
    lines = [fmt.format(*cells[0]), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + [fmt.format(*r) for r in cells[1:]])


def _sci(x: float) -> str:
    return f"{x:.3e}"


def _gb(n: int) -> str:
    return f"{n / 1e9:,.2f} GB"


@click.command()
@click.option("--preset", type=click.Choice(list(acc.PRESETS)), help="Start from a named config (default: tinystories).")
@click.option("--vocab-size", type=int, help="Override: vocabulary size V.")
@click.option("--context-length", type=int, help="Override: tokens per sequence T (FLOPs and memory use it).")
@click.option("--d-model", type=int, help="Override: model width d.")
@click.option("--num-layers", type=int, help="Override: number of blocks L.")
@click.option("--num-heads", type=int, help="Override: attention heads H.")
@click.option("--d-ff", type=int, help="Override: feed-forward width f.")
@click.option("--rope-theta", type=float, help="Override: RoPE θ (does not change any count).")
@click.option("--norm", type=click.Choice(NORMS), help="Ablation: pre/post/none RMSNorm.")
@click.option("--position", type=click.Choice(POSITIONS), help="Ablation: rope or none (NoPE).")
@click.option("--ffn", type=click.Choice(FFNS), help="Ablation: swiglu or silu; without --d-ff the FFN width becomes that FFN's default.")
@click.option("--memory", default="80GB", show_default=True, help="Device memory for the largest batch (80GB, 24GiB...).")
@click.option("--batch-size", type=int, default=None, help="Also print the memory for this batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def accounting(preset, memory, batch_size, as_json, **overrides):
    """Count parameters, forward FLOPs by matrix multiply, and AdamW training memory for a model config.

    Example: tinylm accounting --preset gpt2-xl --context-length 16384 --memory 80GB
    """
    config = acc.preset(preset or "tinystories")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "ffn" in changes and "d_ff" not in changes and changes["ffn"] != config.ffn:
        changes["d_ff"] = None
    config = config.replace(**changes)
    memory_bytes = acc.parse_memory(memory)
    T = config.context_length
    params = acc.param_rows(config)
    flops = acc.flop_rows(config)
    shares = acc.flop_shares(config)
    lengths = sorted(set(SCALING_LENGTHS) | {T})
    scaling = acc.context_scaling(config, lengths)
    mem = acc.training_memory(config)
    max_batch = mem.max_batch(memory_bytes)

    if as_json:
        click.echo(json.dumps({
            "config": config.to_dict(),
            "parameters": {r.name: r.value for r in params} | {"total": acc.count_params(config)},
            "forward_flops": {r.name: r.value for r in flops} | {"total": acc.forward_flops(config)},
            "flop_shares": shares,
            "context_scaling": [{"context_length": t, "forward_flops": fl, "shares": sh} for t, fl, sh in scaling],
            "memory": {"per_sequence_bytes": mem.per_sequence, "fixed_bytes": mem.fixed,
                       "memory_bytes": memory_bytes, "max_batch_size": max_batch},
        }, indent=2))
        return

    name = preset or "tinystories"
    click.echo(f"config: {name}" + (" (modified)" if changes else "") + f"  V={config.vocab_size} T={T} "
               f"d={config.d_model} L={config.num_layers} H={config.num_heads} f={config.ffn_dim} "
               f"norm={config.norm} position={config.position} ffn={config.ffn}\n")

    P = acc.count_params(config)
    click.echo("Parameters")
    click.echo(_table(["component", "formula", "count", "share"],
                      [(r.name, r.formula, f"{r.value:,}", f"{r.value / P:.1%}") for r in params]
                      + [("total", "", f"{P:,}", "100.0%")]))
    click.echo(f"fp32 weights: {_gb(4 * P)}\n")

    total = acc.forward_flops(config)
    click.echo(f"Forward FLOPs per sequence of T={T} tokens (matrix multiplies only)")
    click.echo(_table(["matmul", "formula", "FLOPs", "share"],
                      [(r.name, r.formula, _sci(r.value), f"{r.value / total:.1%}") for r in flops]
                      + [("total", "", _sci(total), "100.0%")]))
    click.echo(f"training step ≈ 3 × forward = {_sci(3 * total)} FLOPs per sequence\n")

    click.echo("FLOP shares as the context grows")
    click.echo(_table(["T", "forward FLOPs", "attention", "feed-forward", "output"],
                      [(f"{t:,}", _sci(fl), f"{sh['attention']:.1%}", f"{sh['feed-forward']:.1%}", f"{sh['output']:.1%}")
                       for t, fl, sh in scaling], align=[">", ">", ">", ">", ">"]))
    click.echo("")

    click.echo(f"Training memory (float32, AdamW) = a·batch_size + b at T={T}")
    click.echo(_table(["fixed (b)", "formula", "bytes"],
                      [(r.name, r.formula, _gb(r.value)) for r in mem.fixed_rows] + [("b", "", _gb(mem.fixed))]))
    click.echo(_table(["activations per sequence (a)", "formula", "bytes"],
                      [(r.name, r.formula, _gb(mem.bytes_per_float * r.value)) for r in mem.activation_rows]
                      + [("a", "", _gb(mem.per_sequence))]))
    click.echo(f"memory = {mem.per_sequence:,} · batch_size + {mem.fixed:,} bytes")
    if batch_size:
        click.echo(f"batch_size {batch_size}: {_gb(mem.total(batch_size))}")
    fits = f"largest batch that fits in {memory} ({_gb(memory_bytes)}): {max_batch}"
    if not max_batch:
        fits += (" (weights, gradients and optimizer state alone do not fit)" if mem.fixed > memory_bytes
                 else " (one sequence's activations do not fit; shorten the context)")
    click.echo(fits)


COMMANDS = [accounting]
