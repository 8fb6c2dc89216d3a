"""Why packing the default CNN at batch 32 gains little: its convolutions and batch norms cost per
member about what they cost alone. Forward + backward, ms, one thread, M = 5 members at batch 32,
for the default CNN's three layers on MNIST-1D (40 positions):

- conv: 5 separate ``conv1d`` / one grouped ``conv1d`` (the folded pack) / one grouped ``conv2d``
  in channels-last / im2col with ``bmm``;
- batch norm: 5 separate calls / one call over 5*C channels (the folded pack).

    python scripts/bench_fold_layers.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

M, B = 5, 32
LAYERS = [(1, 32, 40, 1), (32, 64, 40, 2), (64, 128, 20, 2)]  # in, out channels, length, stride


def ms(f, n: int = 50) -> float:
    for _ in range(5):
        f()
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n * 1e3


def convs(cin: int, cout: int, length: int, stride: int) -> dict[str, float]:
    xs = [torch.randn(B, cin, length, requires_grad=True) for _ in range(M)]
    ws = [torch.randn(cout, cin, 3, requires_grad=True) for _ in range(M)]
    xg = torch.randn(B, M * cin, length, requires_grad=True)
    wg = torch.randn(M * cout, cin, 3, requires_grad=True)
    g = torch.randn_like(F.conv1d(xg, wg, stride=stride, padding=1, groups=M))
    x4 = xg.detach().unsqueeze(-1).contiguous(memory_format=torch.channels_last).requires_grad_()
    w4 = wg.detach().unsqueeze(-1).contiguous(memory_format=torch.channels_last).requires_grad_()
    g4 = g.unsqueeze(-1).contiguous(memory_format=torch.channels_last)
    xm = torch.randn(M, B, cin, length, requires_grad=True)

    def separate():
        for x, w, gi in zip(xs, ws, g.chunk(M, 1), strict=True):
            F.conv1d(x, w, stride=stride, padding=1).backward(gi)

    def im2col():
        cols = F.pad(xm, (1, 1)).unfold(3, 3, stride)  # (M, B, cin, L', 3)
        cols = cols.permute(0, 1, 3, 2, 4).reshape(M, -1, cin * 3)
        torch.bmm(cols, wg.view(M, cout, -1).transpose(1, 2)).sum().backward()

    return {"separate": ms(separate),
            "grouped": ms(lambda: F.conv1d(xg, wg, stride=stride, padding=1, groups=M).backward(g)),
            "channels-last": ms(lambda: F.conv2d(x4, w4, stride=(stride, 1), padding=(1, 0), groups=M).backward(g4)),
            "im2col": ms(im2col)}


def batch_norms(c: int, length: int) -> dict[str, float]:
    xs = [torch.randn(B, c, length, requires_grad=True) for _ in range(M)]
    w, b = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
    mean, var = torch.zeros(c), torch.ones(c)
    xg = torch.randn(B, M * c, length, requires_grad=True)
    wg, bg = torch.ones(M * c, requires_grad=True), torch.zeros(M * c, requires_grad=True)
    mg, vg = torch.zeros(M * c), torch.ones(M * c)
    g = torch.randn_like(xg)

    def separate():
        for x, gi in zip(xs, g.chunk(M, 1), strict=True):
            F.batch_norm(x, mean, var, w, b, True, 0.1, 1e-5).backward(gi)

    return {"separate": ms(separate), "folded": ms(lambda: F.batch_norm(xg, mg, vg, wg, bg, True, 0.1, 1e-5).backward(g))}


def main() -> None:
    torch.set_num_threads(1)
    rows = [("conv", convs(*layer)) for layer in LAYERS]
    rows += [("batch norm", batch_norms(cout, length // stride)) for _, cout, length, stride in LAYERS]
    for kind in ("conv", "batch norm"):
        picked = [r for k, r in rows if k == kind]
        total = {name: sum(r[name] for r in picked) for name in picked[0]}
        print(f"{kind}, three layers: " + ", ".join(f"{name} {v:.2f} ms" for name, v in total.items()))


if __name__ == "__main__":
    main()
