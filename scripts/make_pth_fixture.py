"""Writes tests/fixtures/models/distilbert-cls-a-pth: the distilbert-cls-a checkpoint saved as a
PyTorch pickle (pytorch_model.bin, torch.save's zip format) instead of safetensors, so the Rust
tests check that .bin weights load (without executing pickle code) and give the same outputs
as tests/fixtures/reference/distilbert-cls-a.json.

Run by hand after scripts/make_fixtures.py:  /work/venv-torch/bin/python scripts/make_pth_fixture.py
"""
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

root = Path(__file__).resolve().parent.parent
src = root / "tests/fixtures/models/distilbert-cls-a"
dst = root / "tests/fixtures/models/distilbert-cls-a-pth"
shutil.rmtree(dst, ignore_errors=True)
dst.mkdir(parents=True)
for f in src.iterdir():
    if f.name != "model.safetensors":
        shutil.copy(f, dst / f.name)
torch.save(load_file(src / "model.safetensors"), dst / "pytorch_model.bin")
print("wrote", dst)
