"""The Python examples of docs/python.md run as written."""

import pathlib
import re

import pytest
import torch

from flashattn import _ops

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "python.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index, capsys):
    code = BLOCKS[index]
    if "torch.compile" in code and not _ops.HAS_CUSTOM_OP:
        code = code.split("compiled = torch.compile")[0]  # graph breaks before PyTorch 2.4
    torch._dynamo.reset() if hasattr(torch, "_dynamo") else None
    exec(compile(code, f"{DOC}:block{index}", "exec"), {"__name__": "__doc_example__"})
