"""Small programs for the Rust unit tests (crates/pteron/tests/data/).

Run: conformance/.venv/bin/python conformance/make_test_programs.py
"""
import os

import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "pteron", "tests", "data")


class LinearRelu(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x):
        return torch.relu(self.lin(x))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    ep = torch.export.export(LinearRelu().eval(), (torch.randn(2, 8),))
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    path = os.path.join(OUT, "xnnpack_linear.pte")
    with open(path, "wb") as f:
        f.write(prog.buffer)
    print(f"wrote {path} ({len(prog.buffer)} bytes)")


if __name__ == "__main__":
    main()
