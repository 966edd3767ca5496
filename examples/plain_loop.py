"""A plain PyTorch training loop, watched by grokwatch: a + b mod 47 with a small MLP.

python examples/plain_loop.py --root runs --sweep mine --steps 3000
grokwatch runs/mine                      # the dashboard, live, in another terminal
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

import grokwatch
from grokwatch.integrations.track import model_norms
from grokwatch.store import run_id_for

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--root", default="runs")
ap.add_argument("--sweep", default="plain")
ap.add_argument("--run-id", default=None, help="default: wd<weight decay>-s<seed>")
ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--weight-decay", type=float, default=1.0)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
torch.set_num_threads(1)
torch.manual_seed(args.seed)

# data: every pair (a, b), half of them to train on
P, LR = 47, 3e-3
a, b = torch.arange(P).repeat_interleave(P), torch.arange(P).repeat(P)
x, y = torch.stack([a, b], 1), (a + b) % P
perm = torch.randperm(P * P)
train, val = perm[: P * P // 2], perm[P * P // 2 :]


class MLP(nn.Module):
    def __init__(self, d=128, hidden=256):
        super().__init__()
        self.embed, self.hidden, self.unembed = nn.Embedding(P, d), nn.Linear(2 * d, hidden), nn.Linear(hidden, P)

    def forward(self, ab):
        return self.unembed(F.relu(self.hidden(self.embed(ab).flatten(1))))


model = MLP()
opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=args.weight_decay, betas=(0.9, 0.98))


def loss_acc(idx):
    logits = model(x[idx])
    return F.cross_entropy(logits, y[idx]), (logits.argmax(-1) == y[idx]).float().mean()


config = {
    "task": f"a+b mod {P}",
    "model": "mlp",
    "lr": LR,
    "weight_decay": args.weight_decay,
    "seed": args.seed,
    "steps": args.steps,
    "train_frac": 0.5,
}
run_id = args.run_id or run_id_for(args.weight_decay, args.seed)  # "wd1.0-s00", as every grokwatch view names runs
with grokwatch.init(root=args.root, sweep=args.sweep, run_id=run_id, config=config, flush_seconds=2) as run:
    for step in range(1, args.steps + 1):
        metrics = {}
        if step % 10 == 0:  # validate on the weights this step starts from
            with torch.no_grad():
                metrics["val_loss"], metrics["val_acc"] = loss_acc(val)
        opt.zero_grad(set_to_none=True)
        loss, acc = loss_acc(train)
        loss.backward()
        # tensors, not floats: they stay on the device until grokwatch flushes
        run.log(step, train_loss=loss, train_acc=acc, **model_norms(model), **metrics)
        if step % 250 == 0:
            run.probe(step, model=model)  # HTSR alpha and effective rank of the weight matrices
        opt.step()
print(f"{run.path}: {args.steps} steps")
