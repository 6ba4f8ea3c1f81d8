"""`tinylm quickstart` end to end on a slice of the bundled corpus, and its report in a real browser.

The default test runs every stage with a tiny model and a 12-second training budget (about 30 s in
all) and checks each stage's outputs. The slow test opens report.html in headless Chromium (Debian's
`chromium` package) over the DevTools protocol on a pipe: the page renders, every image decodes,
and nothing is logged as an error.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tinylm.cli import main

STEPS = 60
PROMPTS = ["Once upon a time", "The King said"]
CHROMIUM = "/usr/bin/chromium"


def _run_quickstart(out: Path, *budget: str):
    """The quick start on small settings; `budget` defaults to a fixed step count (what a model learns
    in a time budget depends on the machine's load; the time budget has its own test below)."""
    args = [
        "quickstart", "--out", str(out), *(budget or ("--max-steps", str(STEPS))), "--max-corpus-mb", "1.5",
        "--vocab-size", "512", "--d-model", "64", "--layers", "2", "--heads", "2", "--context-length", "64",
        "--batch-size", "16", "--lr", "1e-2", "--eval-tokens", "16384", "--max-new-tokens", "20", "--seed", "3", "--no-progress",
    ]
    for p in PROMPTS:
        args += ["--prompt", p]
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "run1"
    result = _run_quickstart(out)
    assert result.exit_code == 0, result.output
    return out, result.output, None


def test_every_stage_writes_its_outputs(quickstart_run):
    out, output, _ = quickstart_run
    for stage in range(1, 8):
        assert f"[{stage}/7]" in output  # one summary line per stage
    for name in ("train.txt", "val.txt", "tokenizer/vocab.json", "tokenizer/merges.txt", "train.npy", "val.npy",
                 "run/checkpoint.pt", "run/metrics.jsonl", "run/loss_vs_step.png", "run/loss_vs_time.png",
                 "run/config.toml", "report.json", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    train_text = (out / "train.txt").read_text(encoding="utf-8")
    val_text = (out / "val.txt").read_text(encoding="utf-8")
    # train and validation hold different documents: no validation document appears in train
    first_val_doc = val_text.split("<|endoftext|>")[0].strip()
    assert first_val_doc and first_val_doc not in train_text
    assert len(train_text) > 10 * len(val_text) > 0


def test_tokenizer_and_token_files(quickstart_run):
    import numpy as np

    out, _, _ = quickstart_run
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    tok = report["tokenizer"]
    assert tok["vocab_size"] == 512 and tok["merges"] == 512 - 257
    train = np.load(out / "train.npy", mmap_mode="r")
    assert train.dtype == np.uint16 and len(train) == tok["train_tokens"] > 0
    assert int(train.max()) < 512
    # merges compress English text: more than one byte per token, on both splits
    assert 1.5 < tok["train_bytes_per_token"] < 8 and 1.5 < tok["val_bytes_per_token"] < 8


def test_training_learns(quickstart_run):
    out, _, _ = quickstart_run
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    tr, ev = report["training"], report["evaluation"]
    assert tr["steps"] == STEPS and tr["schedule"] == "warm-up-stable-decay over max_steps"  # the tinylm recipe's
    # the model beats a uniform guess over its vocabulary, per token and per byte (a tiny model and
    # 60 steps: a margin, not a quality bar)
    assert math.isfinite(ev["val_loss"]) and ev["val_loss"] < math.log(512) - 0.25
    assert math.isfinite(ev["val_bpb"]) and 0 < ev["val_bpb"] < 8 and ev["val_bpb"] < 0.95 * ev["uniform_bpb"]
    # bits per byte is the loss in bits spread over the evaluated text's bytes
    assert ev["val_bpb"] == pytest.approx(ev["val_loss"] / math.log(2) * ev["tokens"] / ev["bytes"], rel=1e-9)
    metrics = [json.loads(line) for line in (out / "run/metrics.jsonl").read_text().splitlines()]
    assert 0 < metrics[-1]["step"] <= tr["steps"] and any("val_loss" in m for m in metrics)
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]


def test_samples_continue_the_fixed_prompts(quickstart_run):
    out, output, _ = quickstart_run
    samples = json.loads((out / "report.json").read_text(encoding="utf-8"))["samples"]
    assert [s["prompt"] for s in samples] == PROMPTS
    for s in samples:
        assert s["completion"].strip()
        assert s["prompt"] in output


def test_report_html_is_self_contained(quickstart_run):
    out, _, _ = quickstart_run
    page = (out / "report.html").read_text(encoding="utf-8")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    # every image is an embedded PNG that decodes
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 3
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    # tokenizer statistics, the summary figures, the samples, the exact command and config
    assert "Longest tokens" in page and "bytes/token" in page
    assert f'{report["evaluation"]["val_bpb"]:.4f}' in page
    import html

    for s in report["samples"]:
        assert html.escape(s["completion"], quote=True) in page
    assert html.escape(report["command"], quote=True) in page and "--vocab-size 512" in report["command"]
    assert "&quot;d_model&quot;: 64" in page  # the resolved config
    assert "context_length = 64" in page  # run/config.toml


def test_a_time_budget_ends_training(tmp_path):
    """`--minutes`: the trainer's wall-clock budget ends the run (however many steps the machine's
    load allowed: nothing here depends on speed; the schedule itself is tested with a fake clock in
    tests/training/test_loop.py)."""
    result = _run_quickstart(tmp_path / "timed", "--minutes", "0.03")
    assert result.exit_code == 0, result.output
    tr = json.loads((tmp_path / "timed" / "report.json").read_text(encoding="utf-8"))["training"]
    assert tr["schedule"] == "warm-up-stable-decay over the wall-clock budget" and tr["stopped_by_budget"] and tr["steps"] >= 1
    assert "max_minutes = 0.03" in (tmp_path / "timed" / "run" / "config.toml").read_text()
    metrics = [json.loads(line) for line in (tmp_path / "timed" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["wall_clock"] >= 0.03 * 60 and all(m["lr"] > 0 for m in metrics)


def test_generate_works_on_the_run_folder(quickstart_run):
    out, _, _ = quickstart_run
    result = CliRunner().invoke(main, ["generate", "--checkpoint", str(out / "run"), "--prompt", "The", "--max-new-tokens", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("The")


def test_bad_settings_are_one_line_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["quickstart", "--corpus", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "corpus file not found" in result.output
    result = runner.invoke(main, ["quickstart", "--d-model", "100", "--heads", "3", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "divisible" in result.output
    assert not (tmp_path / "o").exists()  # settings are checked before any work


# --- the report in a real browser ------------------------------------------------------------------
class _DevTools:
    """The Chrome DevTools protocol over --remote-debugging-pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, proc, write_fd, read_fd):
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.next_id, self.buffer, self.events = 0, b"", []

    def send(self, method, params=None, session=None, timeout=30.0):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method, timeout=30.0):
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)


def _open_in_chromium(page: Path, profile: Path):
    """(images, text, errors) of the page after its load event, from headless Chromium."""
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def child_fds():  # the pipe ends Chromium expects: it reads fd 3 and writes fd 4
        os.dup2(to_chrome_r, 100)  # (via high numbers, in case a pipe end already is 3 or 4)
        os.dup2(from_chrome_w, 101)
        os.dup2(100, 3)
        os.dup2(101, 4)

    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank",
    ]
    proc = subprocess.Popen(args, preexec_fn=child_fds, pass_fds=(3, 4),  # kept open past preexec_fn
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    cdp = _DevTools(proc, to_chrome_w, from_chrome_r)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        cdp.wait_for("Page.loadEventFired")
        probe = (
            "JSON.stringify({images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),"
            " text: document.body.innerText, height: document.body.scrollHeight})"
        )
        value = json.loads(cdp.send("Runtime.evaluate", {"expression": probe, "returnByValue": True}, session=session)["result"]["value"])
        time.sleep(0.5)  # let late console messages arrive
        cdp.send("Runtime.evaluate", {"expression": "1"}, session=session)
        errors = []
        for event in cdp.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(params)
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(params)
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(params["entry"])
        return value, errors
    finally:
        try:
            cdp.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_chrome_w)
        os.close(from_chrome_r)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(quickstart_run, tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} not installed (Debian: apt-get install chromium)")
    out, _, _ = quickstart_run
    value, errors = _open_in_chromium(out / "report.html", tmp_path / "profile")
    assert errors == []
    assert len(value["images"]) == 3
    for complete, width, height in value["images"]:
        assert complete and width > 0 and height > 0
    assert "tinylm quick-start report" in value["text"] and "validation bits/byte" in value["text"]
    assert value["height"] > 1000
