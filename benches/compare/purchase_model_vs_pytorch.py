#!/usr/bin/env python3
"""The purchase model in flashsql against the same architecture in PyTorch (CPU, f32), on the
same rows in the same run: training seconds per epoch, and scoring throughput.

flashsql trains through SQL (`train_model`, time split, without the category-affinity inputs,
which the PyTorch network does not have) and scores with
`SELECT sum(purchase_prob(...))` over every training row at 7 discount levels, first run (so
every sequence is encoded). PyTorch gets the same rows, exported over SQL, and the same
network: token embedding 2561×32 (0 = padding) plus the factored rows of the token's
event-and-age group (41×32) and category bucket (64×32), Conv1D widths 2/3/5 × 32 channels, ReLU, max
over time, projection to 32, category embedding 8, dense [z(ln price), time_left, sin, cos
of the hour], MLP 44→64→32→2, logit = f + softplus(g)·discount; AdamW (lr 0.003, weight
decay 1e-4), batch 512, 2 threads. PyTorch's scoring is the model's forward pass alone, batch
8,192, no data loading counted.

    cargo build --release && python3 benches/compare/purchase_model_vs_pytorch.py

Needs psycopg, numpy and torch (CPU wheel). FLASHSQL_BINARY overrides the server binary.
"""
import math
import os
import sys
import tempfile
import time

import numpy as np
import psycopg
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import start_server  # noqa: E402
from purchase_model_world import TRAIN_ROWS  # noqa: E402

LEN = 64
LEVELS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5]


BUCKETS = 64
GROUP_OF = torch.tensor([0] + [1 + (t - 1) // BUCKETS for t in range(1, 2561)])
BUCKET_OF = torch.tensor([0] + [(t - 1) % BUCKETS for t in range(1, 2561)])


class Purchase(nn.Module):
    def __init__(self, categories):
        super().__init__()
        self.embed = nn.Embedding(2561, 32, padding_idx=0)
        self.group = nn.Embedding(int(GROUP_OF.max()) + 1, 32)
        self.bucket = nn.Embedding(BUCKETS, 32)
        self.convs = nn.ModuleList([nn.Conv1d(32, 32, w) for w in (2, 3, 5)])
        self.proj = nn.Linear(96, 32)
        self.cat = nn.Embedding(categories + 1, 8)
        self.mlp = nn.Sequential(nn.Linear(44, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, tokens, cat, dense, discount):
        e = self.embed(tokens) + self.group(GROUP_OF[tokens]) + self.bucket(BUCKET_OF[tokens])
        e = (e * (tokens > 0).unsqueeze(-1)).transpose(1, 2)  # [B, E, L], padding zero
        pooled = [torch.relu(c(e)).amax(dim=2) for c in self.convs]
        u = self.proj(torch.cat(pooled, dim=1))
        out = self.mlp(torch.cat([u, self.cat(cat), dense], dim=1))
        return out[:, 0] + nn.functional.softplus(out[:, 1]) * discount


def tensors(rows, cat_index, mean, sd):
    n = len(rows)
    tokens = np.zeros((n, LEN), dtype=np.int64)
    for i, r in enumerate(rows):
        seq = (r[0] or [])[-LEN:]
        if seq:
            tokens[i, LEN - len(seq):] = seq
    cat = np.array([cat_index.get(r[1], 0) for r in rows], dtype=np.int64)
    price = np.array([r[2] for r in rows], dtype=np.float64)
    hour = np.array([r[5] for r in rows], dtype=np.float64)
    dense = np.stack([(np.log(price) - mean) / sd, [r[4] for r in rows],
                      np.sin(hour * 2 * math.pi / 24), np.cos(hour * 2 * math.pi / 24)], axis=1)
    return (torch.from_numpy(tokens), torch.from_numpy(cat), torch.from_numpy(dense.astype(np.float32)),
            torch.tensor([r[3] for r in rows], dtype=torch.float32))


def main():
    torch.set_num_threads(2)
    torch.manual_seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"), ("--scale", "small"))
        try:
            conn = psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
            conn.execute(TRAIN_ROWS)
            epochs = conn.execute(
                "SELECT epoch, seconds FROM train_model('cmp', 'train_rows', epochs => 2, patience => 2, "
                "split => 'time', seed => 1, device => 'cpu', affinity => false)").fetchall()
            ours_epoch = sum(e[1] for e in epochs) / len(epochs)
            conn.execute("CREATE TABLE scoring AS SELECT t.seq, t.category_id, t.price, d.discount, t.time_left, t.hour "
                         "FROM train_rows t CROSS JOIN (VALUES " + ", ".join(f"({x})" for x in LEVELS) + ") AS d(discount)")
            n_score = conn.execute("SELECT count(*) FROM scoring").fetchone()[0]
            t0 = time.time()
            conn.execute("SELECT sum(purchase_prob('cmp', seq, category_id, price, discount, time_left, hour)) FROM scoring").fetchone()
            ours_score = time.time() - t0
            rows = conn.execute(
                "SELECT seq, category_id, price, discount, time_left, hour, CAST(label AS INT), ts FROM train_rows "
                "ORDER BY ts, exposure_id").fetchall()
        finally:
            proc.terminate()
            proc.wait()
    n = len(rows)
    cut = rows[int(0.8 * n)][7]
    train_rows = [r for r in rows if r[7] < cut]
    cats = sorted({r[1] for r in rows})
    cat_index = {c: i + 1 for i, c in enumerate(cats)}
    logp = np.log([r[2] for r in rows])
    mean, sd = logp.mean(), logp.std()
    tok, cat, dense, disc = tensors(train_rows, cat_index, mean, sd)
    y = torch.tensor([r[6] for r in train_rows], dtype=torch.float32)
    model = Purchase(len(cats))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    times = []
    for _ in range(2):
        perm = torch.randperm(len(train_rows))
        t0 = time.time()
        for i in range(0, len(train_rows), 512):
            b = perm[i:i + 512]
            opt.zero_grad()
            loss = loss_fn(model(tok[b], cat[b], dense[b], disc[b]), y[b])
            loss.backward()
            opt.step()
        times.append(time.time() - t0)
    torch_epoch = sum(times) / len(times)
    # Forward throughput on as many rows as flashsql scored (the training rows repeated).
    reps = math.ceil(n_score / len(train_rows))
    tok_s, cat_s, dense_s, disc_s = (t.repeat((reps,) + (1,) * (t.dim() - 1))[:n_score] for t in (tok, cat, dense, disc))
    model.eval()
    with torch.no_grad():
        t0 = time.time()
        for i in range(0, n_score, 8192):
            torch.sigmoid(model(tok_s[i:i + 8192], cat_s[i:i + 8192], dense_s[i:i + 8192], disc_s[i:i + 8192])).sum()
        torch_score = time.time() - t0
    print(f"| {n} training rows ({len(train_rows)} in the training split), {n_score} rows scored, 2 threads | flashsql | PyTorch {torch.__version__} | flashsql / PyTorch |")
    print("|---|---|---|---|")
    print(f"| training, seconds per epoch | {ours_epoch:.1f} | {torch_epoch:.1f} | {ours_epoch / torch_epoch:.2f}× the time |")
    print(f"| scoring, rows/s (flashsql: SQL end to end, first run; PyTorch: forward only) | {n_score / ours_score:,.0f} | {n_score / torch_score:,.0f} | {torch_score / ours_score:.2f}× the rate |")


if __name__ == "__main__":
    main()
