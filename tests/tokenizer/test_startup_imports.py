"""`tinylm encode` and `tinylm train-bpe` import only what they need: no torch, no matplotlib
(issue 12: their start-up was about 0.5 s of a 0.77 s encode of 20 MB)."""

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures"

# Runs each command (argument lists as JSON) in this one process, then lists the heavy modules loaded.
RUN_COMMANDS = """
import json, sys
from tinylm.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit as exc:
        if exc.code:
            raise
print("heavy modules:", *[m for m in ("torch", "matplotlib") if m in sys.modules])
"""


def test_encode_and_train_bpe_import_no_torch_or_matplotlib(tmp_path):
    from tinylm import Tokenizer

    tok = tmp_path / "gpt2"
    Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", ["<|endoftext|>"]).save_dir(tok)
    text = str(FIXTURES / "tinystories_sample.txt")
    commands = [
        ["encode", text, "-t", str(tok), "-o", str(tmp_path / "ids.npy"), "-j", "1"],
        ["train-bpe", text, "-v", "300", "-o", str(tmp_path / "trained"), "-j", "1"],
    ]
    done = subprocess.run([sys.executable, "-c", RUN_COMMANDS, json.dumps(commands)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ids.npy").exists() and (tmp_path / "trained" / "merges.txt").exists()
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("heavy modules:")][-1]
    assert line.removeprefix("heavy modules:").strip() == ""
