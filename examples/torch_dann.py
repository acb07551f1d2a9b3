"""DANN in PyTorch with gradrev: two moons as the source, the same rotated 35° as the target.

python examples/torch_dann.py [--steps 1000]
"""

import argparse

import numpy as np
import torch
from torch import nn

from gradrev import schedules
from gradrev.torch import GradientReversal


def moons(n, rng, degrees=0.0):
    t = np.pi * rng.uniform(0, 1, n)
    y = rng.integers(0, 2, n)
    x = np.stack([np.cos(t) + y * (1 - 2 * np.cos(t)), np.sin(t) - y * (2 * np.sin(t) - 0.5)], 1)
    x = x + rng.normal(0, 0.1, (n, 2)) - [0.5, 0.25]
    a = np.deg2rad(degrees)
    x = x @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def main(steps: int) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xs, ys = moons(300, rng)
    xt, yt = moons(300, rng, degrees=35)  # yt is only used to report accuracy

    features = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh())
    label_head = nn.Linear(32, 2)
    grl = GradientReversal(schedule=schedules.dann(total_steps=steps))
    domain_head = nn.Sequential(grl, nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    modules = nn.ModuleList([features, label_head, domain_head])
    opt = torch.optim.Adam(modules.parameters(), lr=0.005)

    for _ in range(steps):
        i, j = torch.randint(0, 300, (32,)), torch.randint(0, 300, (32,))
        hs, ht = features(xs[i]), features(xt[j])
        label_loss = nn.functional.cross_entropy(label_head(hs), ys[i])
        domain_logits = domain_head(torch.cat([hs, ht]))[:, 0]
        is_target = torch.cat([torch.zeros(32), torch.ones(32)])
        domain_loss = nn.functional.binary_cross_entropy_with_logits(domain_logits, is_target)
        opt.zero_grad()
        (label_loss + domain_loss).backward()
        opt.step()
        grl.step()  # once per batch: λ follows the DANN ramp

    with torch.no_grad():
        src = (label_head(features(xs)).argmax(1) == ys).float().mean()
        tgt = (label_head(features(xt)).argmax(1) == yt).float().mean()
    print(f"λ = {grl.lambda_:.3f}, source accuracy {src:.3f}, target accuracy {tgt:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    main(parser.parse_args().steps)
