"""One self-contained `report.html` for a quick-start run: no scripts, no external resources.

Images are PNGs embedded as base64 `data:` URIs and the style sheet is inline, so the file opens
from disk, offline, in any browser. Sections: summary, tokenizer statistics, learning curves,
samples, and the exact command and resolved configuration.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

from tinylm.io import atomic_write_bytes
from tinylm.training.run_dir import RunDir

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre,code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;white-space:pre-wrap}
img{max-width:100%;height:auto;border:1px solid #eee}
.sample{margin:.8em 0;padding:.6em .8em;background:#fafafa;border-left:3px solid #79b}
.prompt{font-weight:600}.muted{color:#666;font-size:.9em}
"""


def png_data_uri(path_or_bytes: str | os.PathLike | bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def token_length_histogram(lengths: list[int]) -> bytes:
    """PNG bytes: how many vocabulary entries have each length in bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    if lengths:
        ax.hist(lengths, bins=range(1, max(lengths) + 2), align="left", rwidth=0.85, color="#4878a8")
    ax.set_xlabel("token length (bytes)")
    ax.set_ylabel("vocabulary entries")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, fmt: str = ",.0f") -> str:
    if value is None:
        return "–"
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return _e(value)


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td class=num>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def render_report(report: dict, images: dict[str, str]) -> str:
    """The HTML text; `images` maps a caption to a data: URI."""
    ev, tr, tok, corpus = report.get("evaluation", {}), report.get("training", {}), report.get("tokenizer", {}), report.get("corpus", {})
    stages = report.get("stages_seconds", {})
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>tinylm quick-start report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>tinylm quick-start report</h1>",
        f'<p class=muted>Command: <code>{_e(report.get("command", ""))}</code></p>',
        "<h2>Summary</h2>",
        _table(
            [
                ("validation loss (nats/token)", _num(ev.get("val_loss"), ".4f")),
                ("validation bits/byte", _num(ev.get("val_bpb"), ".4f")),
                ("uniform-guess bits/byte (log2 V per token)", _num(ev.get("uniform_bpb"), ".3f")),
                ("validation perplexity", _num(ev.get("val_perplexity"), ".1f")),
                ("evaluated on", f'{_num(ev.get("tokens"))} tokens / {_num(ev.get("bytes"))} bytes'),
                ("model parameters", _num(tr.get("params"))),
                ("training steps", _num(tr.get("steps"))),
                ("training tokens", _num(tr.get("tokens"))),
                ("training throughput (tokens/s)", _num(tr.get("tokens_per_s"))),
                ("total wall-clock", f'{_num(report.get("total_seconds"), ".1f")} s'),
            ]
        ),
        "<h3>Stages</h3>",
        _table([(name, f"{_num(sec, '.1f')} s") for name, sec in stages.items()]),
        "<h2>Corpus</h2>",
        _table(
            [
                ("source", _e(corpus.get("source", ""))),
                ("size", f'{_num(corpus.get("bytes"))} bytes'),
                ("documents", f'{_num(corpus.get("train_docs"))} train / {_num(corpus.get("val_docs"))} validation'),
                ("validation split", _e(corpus.get("validation", ""))),
            ]
        ),
        "<h2>Tokenizer</h2>",
        _table(
            [
                ("vocabulary", f'{_num(tok.get("vocab_size"))} tokens ({_num(tok.get("merges"))} merges)'),
                ("training time", f'{_num(tok.get("train_seconds"), ".1f")} s (counting {_num(tok.get("count_seconds"), ".1f")} s, merging {_num(tok.get("merge_seconds"), ".1f")} s)'),
                ("distinct pre-tokens", _num(tok.get("distinct_pretokens"))),
                ("compression, train", f'{_num(tok.get("train_bytes_per_token"), ".3f")} bytes/token'),
                ("compression, validation", f'{_num(tok.get("val_bytes_per_token"), ".3f")} bytes/token'),
                ("tokens", f'{_num(tok.get("train_tokens"))} train / {_num(tok.get("val_tokens"))} validation'),
                ("encoding", f'{_num(tok.get("encode_seconds"), ".1f")} s ({_num(tok.get("encode_mb_per_s"), ".1f")} MB/s, train and validation at once)'),
            ]
        ),
        "<h3>Longest tokens</h3><table><tr><th>id</th><th>bytes</th><th>text</th></tr>",
        "".join(
            f'<tr><td class=num>{t["id"]}</td><td class=num>{t["bytes"]}</td><td><code>{_e(repr(t["text"]))}</code></td></tr>'
            for t in tok.get("longest_tokens", [])
        ),
        "</table>",
    ]
    for caption, uri in images.items():
        parts.append(f'<figure><img src="{uri}" alt="{_e(caption)}"><figcaption class=muted>{_e(caption)}</figcaption></figure>')
        if caption.startswith("token lengths"):
            parts.append("<h2>Learning curves</h2>")
    parts.append("<h2>Samples</h2>")
    cfg = report.get("config", {})
    parts.append(
        f'<p class=muted>temperature {_e(cfg.get("temperature"))}, top-p {_e(cfg.get("top_p"))}, '
        f'{_e(cfg.get("max_new_tokens"))} new tokens, seeds {_e(cfg.get("seed"))}, {_e(cfg.get("seed"))}+1, …</p>'
    )
    for s in report.get("samples", []):
        parts.append(f'<div class=sample><span class=prompt>{_e(s["prompt"])}</span>{_e(s["completion"])}</div>')
    parts += [
        "<h2>Command and configuration</h2>",
        f'<pre>{_e(report.get("command", ""))}</pre>',
        "<h3>Resolved quick-start configuration</h3>",
        f"<pre>{_e(json.dumps(cfg, indent=1, ensure_ascii=False))}</pre>",
    ]
    run_cfg = report.get("run_config_toml")
    if run_cfg:
        parts.append(f"<h3>Training run configuration (run/config.toml)</h3><pre>{_e(run_cfg)}</pre>")
    parts += [
        "<h3>Training schedule</h3>",
        f"<pre>{_e(json.dumps({k: v for k, v in tr.items() if k != 'run_dir'}, indent=1))}</pre>",
        "<h3>Environment</h3>",
        f'<pre>{_e(json.dumps(report.get("environment", {}), indent=1))}</pre>',
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(report: dict, run_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write report.html for a quick-start report (images from the run folder, embedded)."""
    run_dir, path = Path(run_dir), Path(path)
    images = {}
    lengths = report.get("tokenizer", {}).get("token_lengths")
    if lengths:
        images["token lengths in the vocabulary"] = png_data_uri(token_length_histogram(lengths))
    for name, caption in (("loss_vs_step.png", "loss against step (train: running mean; validation: fixed windows)"), ("loss_vs_time.png", "loss against wall-clock")):
        if (run_dir / name).exists():
            images[caption] = png_data_uri(run_dir / name)
    config_toml = RunDir(run_dir).config
    if config_toml.exists():
        report = {**report, "run_config_toml": config_toml.read_text(encoding="utf-8")}
    atomic_write_bytes(path, render_report(report, images).encode("utf-8"))
    return path
