#!/usr/bin/python3
"""Train relprop's default model: a small timm-style ViT on "fmnist pairs"
(tools/fmnist_pairs.py), multi-label BCE, and export models/fmnist_vit.onnx
plus models/MODEL_CARD.md.

    nice -n 10 /usr/bin/python3 tools/train_fmnist_vit.py --deadline 03:36 --workdir /tmp/train

The learning-rate schedule (linear warmup, then cosine) runs either over a
fixed number of steps (--steps) or over a wall-clock budget (--minutes /
--deadline, progress = elapsed/budget), so a run on a shared machine always
ends on time.  The held-out set is fixed: FmnistPairs('test', seed=2021)
canvases 0..eval_count-1.  Whenever held-out top-2 accuracy improves the
checkpoint is saved and the ONNX re-exported, so a usable model exists at any
time.  `--finalize` reloads the best checkpoint, re-exports and rewrites the
model card without training.
"""
import argparse
import datetime as dt
import json
import math
import os
import sys
import threading
import queue
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fmnist_pairs import CLASSES, FmnistPairs  # noqa: E402
from vit import VisionTransformer, export_onnx  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = 0.5, 0.5


def norm(x):
    return (x - MEAN) / STD


def log(msg, f=None):
    line = "[%s] %s" % (dt.datetime.utcnow().strftime("%H:%M:%S"), msg)
    print(line, flush=True)
    if f is not None:
        f.write(line + "\n")
        f.flush()


def make_eval_set(count, seed=2021):
    ds = FmnistPairs("test", size=64, seed=seed)
    x, y, _ = ds.batch(range(count))
    return torch.from_numpy(norm(x)), torch.from_numpy(y)


@torch.no_grad()
def evaluate(model, x, y, bs=250):
    model.eval()
    logits = torch.cat([model(x[i:i + bs]) for i in range(0, len(x), bs)])
    model.train()
    top2 = logits.topk(2, dim=1).indices
    ys, ts = y.sort(1).values, top2.sort(1).values
    pair = (ys == ts).all(1).float().mean().item()
    # per item: its class is among the top-2 logits
    item_in_top2 = ((top2[:, :, None] == y[:, None, :]).any(1)).float().mean().item()
    # top-1 logit is one of the two true classes
    top1_ok = (logits.argmax(1)[:, None] == y).any(1).float().mean().item()
    tgt = torch.zeros_like(logits).scatter_(1, y, 1.0)
    loss = F.binary_cross_entropy_with_logits(logits, tgt).item()
    return dict(top2=pair, item_recall2=item_in_top2, top1_true=top1_ok, loss=loss), logits


class Prefetcher:
    """Generates training batches in a background thread."""

    def __init__(self, ds, batch, start_step, depth=3):
        self.ds, self.batch, self.step = ds, batch, start_step
        self.q = queue.Queue(maxsize=depth)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while True:
            i0 = self.step * self.batch
            x, y, _ = self.ds.batch(range(i0, i0 + self.batch))
            self.q.put((torch.from_numpy(norm(x)), torch.from_numpy(y)))
            self.step += 1

    def get(self):
        return self.q.get()


def add_metadata(path):
    import onnx
    m = onnx.load(path)
    props = {
        "relprop.resize": "64", "relprop.crop": "64", "relprop.interpolation": "bilinear",
        "relprop.mean": "0.5,0.5,0.5", "relprop.std": "0.5,0.5,0.5",
        "relprop.labels": "\n".join(CLASSES), "relprop.multilabel": "1",
    }
    del m.metadata_props[:]
    for k, v in props.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    m.doc_string = "relprop default model: ViT on fmnist pairs (tools/train_fmnist_vit.py)"
    onnx.checker.check_model(m)
    onnx.save(m, path)


def export_final(model, out_path, opset=17):
    tmp = out_path + ".tmp"
    m = VisionTransformer(**model.config)
    m.load_state_dict(model.state_dict())
    export_onnx(m.eval(), tmp, opset=opset)
    add_metadata(tmp)
    os.replace(tmp, out_path)


def deadline_ts(hhmm):
    now = dt.datetime.utcnow()
    h, m = map(int, hhmm.split(":"))
    d = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if d < now - dt.timedelta(hours=1):
        d += dt.timedelta(days=1)
    return time.time() + (d - now).total_seconds()


def lr_at(a, step, progress):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(max(progress, 0.0), 1.0)
    return a.min_lr + (a.lr - a.min_lr) * 0.5 * (1 + math.cos(math.pi * p))


def write_card(a, state, path):
    cfg = state["config"]
    hist = state["history"]
    fin = state.get("final", {})
    curve = "\n".join("| %d | %.1f | %.4f | %.4f | %.4f |" % (h["step"], h["minutes"], h["top2"],
                                                              h["item_recall2"], h["top1_true"])
                      for h in hist)
    nparams = state.get("nparams", 0)
    size = os.path.getsize(a.onnx) if os.path.exists(a.onnx) else 0
    pcr = fin.get("per_class_recall2")
    weak = ", ".join("%s %.2f" % (CLASSES[c], pcr[c]) for c in np.argsort(pcr)[:4]) if pcr else "n/a"
    per_class = ("\n\nPer class, item's class among the top-2 logits (5000 canvases): " +
                 ", ".join("%s %.3f" % (CLASSES[c], pcr[c]) for c in range(10)) + ".") if pcr else ""
    def command(argv, seconds):
        argv = list(argv)
        if "--deadline" in argv:  # a deadline is not reproducible; give the equivalent budget
            i = argv.index("--deadline")
            argv[i:i + 2] = ["--minutes", "%.0f" % (seconds / 60)]
        return "nice -n 10 /usr/bin/python3 tools/train_fmnist_vit.py " + " ".join(argv)
    phases = state.get("phases", [])
    if phases:  # a warm restart: the first run, then this one resuming from its checkpoint
        first = phases[0]
        cmd = (command(first["argv"], first["seconds"]) + "\n" +
               command(state["argv"], state["train_seconds"] - first["seconds"]))
        restart = (" This model was trained in two runs: %d steps as above, then a warm restart "
                   "from that run's best checkpoint (`--resume`: lr %g, %d warmup steps, cosine to %g "
                   "again, data continuing after the first run's canvases) for %d more steps."
                   % (first["steps"], a.lr, a.warmup, a.min_lr, state["step"] - first["steps"]))
        first_args = first["args"]
        lr0, wu0 = first_args["lr"], first_args["warmup"]
    else:
        cmd = command(state["argv"], state["train_seconds"])
        restart, lr0, wu0 = "", a.lr, a.warmup
    txt = f"""# fmnist_vit — relprop's default model

A small Vision Transformer trained on **fmnist pairs**: 64×64 RGB canvases
holding two Fashion-MNIST items of different classes, each tinted with a
random colour and placed in its own non-overlapping square box (side 24–32 px,
random position) on a dark, lightly noisy background.  It is multi-label (one
sigmoid per class); the two largest logits should be the two items' classes.
It exists to show class-specific relevance maps (Chefer, Gur & Wolf, CVPR 2021):
explaining class A should light up item A, explaining class B item B.

File: `models/fmnist_vit.onnx` ({size / 1e6:.2f} MB, {nparams:,} parameters, opset 17,
`LayerNormalization` op, exported with `torch.onnx.export(..., do_constant_folding=True)`
from torch {torch.__version__}).

## Interface

* input `input`: float32 (1,3,64,64), RGB in [0,1] normalised as (x−0.5)/0.5
* output `logits`: float32 (1,10), one logit per class (apply sigmoid for
  per-class probabilities; they do not sum to 1)
* classes (`models/fmnist_labels.txt`): {", ".join(CLASSES)}
* ONNX metadata_props: relprop.resize=64, relprop.crop=64,
  relprop.interpolation=bilinear, relprop.mean=0.5,0.5,0.5, relprop.std=0.5,0.5,0.5,
  relprop.labels (the 10 names, newline-separated), relprop.multilabel=1

## Architecture (timm-style, as in the paper's ViT_LRP)

Conv patch embedding (patch {cfg['patch_size']}, 8×8 grid) → CLS token first, then
patches row-major (65 tokens) → + learned pos_embed → {cfg['depth']} pre-norm blocks
(embed dim {cfg['embed_dim']}, {cfg['num_heads']} heads of {cfg['embed_dim'] // cfg['num_heads']},
fused qkv Linear with bias, `softmax((q @ kᵀ) * scale) @ v`, MLP {int(cfg['embed_dim'] * cfg['mlp_ratio'])}
with exact erf GELU, LayerNorm eps 1e-6) → final LayerNorm → Linear head on the CLS token.
Source: `tools/vit.py`.

Initialisation: pos_embed starts as a fixed 2-D sin-cos embedding (CLS row 0)
and is then learned; attention uses mimetic initialisation (Trockman & Kolter
2023): per head W_q W_kᵀ ≈ {a.mimetic[0]}·Z + {a.mimetic[1]}·I and W_v W_proj ≈
{a.mimetic[2]}·Z − {a.mimetic[3]}·I (Z Gaussian, variance 1/d); head bias
starts at log(0.2/0.8) (prior of 2 positives in 10).

## Data

Fashion-MNIST from Debian's idx files
(`/usr/share/datasets/fashion-mnist/{{train,t10k}}-*-ubyte.gz`).  Training
canvases come from the train files (`FmnistPairs('train', seed={a.seed})`,
canvas i = batch step·{a.batch}+j, generated on the fly, never repeated);
the held-out set is `FmnistPairs('test', seed=2021)` canvases 0..{a.eval_count - 1}
(t10k items only).  No further augmentation (the generator already randomises
items, colours, scale and placement).

## Training recipe

AdamW (lr {lr0}, betas (0.9, 0.999), weight decay {a.wd} on matrices only),
batch {a.batch}, {wu0} warmup steps then cosine decay to {a.min_lr}
over {"%d steps" % a.steps if a.steps else "a wall-clock budget (progress = elapsed / budget)"},
BCE-with-logits against the two-hot target, gradient clipping at {a.clip}.
{"The budget-based schedule means the number of steps depends on machine load; this run made %d steps." % state["step"] if not a.steps else ""}
CPU only, `nice -n 10` on a shared 2-core machine, 1 torch thread (under the
colleagues' build load 2 threads measured ~4× slower per step than 1):
{state["step"]} steps in {state["train_seconds"] / 60:.1f} min wall time (including evaluations).
Best checkpoint (by held-out top-2) at step {state["best_step"]}.{restart}

## Held-out accuracy

Metric (as in the oracle fixtures): fraction of held-out canvases whose two true
classes are exactly the model's top-2 logits.

* held-out top-2 accuracy ({a.eval_count} canvases, seed 2021): **{state["best"]["top2"]:.4f}**
* per item, class among the top-2 logits: {state["best"]["item_recall2"]:.4f}
* top-1 logit is one of the two true classes: {state["best"]["top1_true"]:.4f}
{("* on canvases 0..4999 of this generator: top-2 %.4f, item-in-top-2 %.4f, top-1 true %.4f" % (fin["top2"], fin["item_recall2"], fin["top1_true"])) if fin else ""}
{("* single-item top-1 accuracy (one item of each held-out canvas replaced by background noise — out of distribution, the model only ever saw pairs; 2000 canvases): %.4f" % fin["single_top1"]) if "single_top1" in fin else ""}

For comparison, the oracle fixtures' ViT (dim 96, depth 4, 1600 steps of 128,
standard init) scored 0.5102 on 5000 canvases of an earlier generator with the
same recipe description; the canvases differ, so the numbers are close in spirit
but not directly comparable.{per_class}

Training curve (held-out, {a.eval_count} canvases):

| step | minutes | top-2 | item in top-2 | top-1 true |
|---:|---:|---:|---:|---:|
{curve}

## Regenerate

```sh
{cmd}
# re-export + rewrite this card from the best checkpoint without training:
/usr/bin/python3 tools/train_fmnist_vit.py --finalize --workdir {a.workdir}
# held-out canvases for evaluation (PNG + masks + LIST.csv):
/usr/bin/python3 tools/fmnist_pairs.py --split test --count 2000 --out /tmp/fmnist_pairs_test
```

Training is seeded (torch seed {a.seed}, data seed {a.seed}), but CPU float
reductions with threads and the wall-clock schedule make reruns close, not
bit-identical.

## Limitations

* Toy domain: 64×64 synthetic canvases of two tinted Fashion-MNIST items on a
  dark background.  It is not a natural-image model and says nothing useful
  about real photos.
* Pair accuracy is below the ~0.85 ceiling implied by single-item
  Fashion-MNIST accuracy; items are shrunk to 24–32 px and lose detail.
  Weakest classes (held-out, item's class among the top-2 logits):
  {weak}.
* Items always have different classes, exactly two per canvas, never overlap,
  and colour is random, so the model has no reason to use colour; canvases
  outside this distribution (one item, three items, same class twice, light
  backgrounds) are out of distribution.
* Trained briefly on a CPU; weights are meant for demonstrating explanations,
  not as a benchmark.
"""
    with open(path, "w") as f:
        f.write(txt)


def single_item_top1(model, count=2000, seed=2021):
    """Top-1 accuracy on canvases where one of the two items is blanked out."""
    ds = FmnistPairs("test", size=64, seed=seed)
    xs, ys = [], []
    for i in range(count):
        img, lab, masks, info = ds.sample(i)
        k = i % 2
        x0, y0, x1, y1 = info["place_boxes_xyxy"][1 - k]
        img = img.copy()
        rng = np.random.default_rng([seed, i, 77])
        img[:, y0:y1, x0:x1] = rng.uniform(0, ds.noise, size=(3, y1 - y0, x1 - x0))
        xs.append(img)
        ys.append(lab[k])
    x = torch.from_numpy(norm(np.stack(xs)))
    y = torch.tensor(ys)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 250]) for i in range(0, len(x), 250)])
    return (logits.argmax(1) == y).float().mean().item()


def finalize(a, lf):
    st = torch.load(os.path.join(a.workdir, "state.pt"))
    model = VisionTransformer(**st["config"])
    model.load_state_dict(torch.load(os.path.join(a.workdir, "best.pt")))
    model.eval()
    export_final(model, a.onnx)
    x, y = make_eval_set(5000)
    res, logits = evaluate(model, x, y)
    top2 = logits.topk(2, dim=1).indices
    hit = (top2[:, :, None] == y[:, None, :]).any(1)  # (N,2): item k's class in top-2
    res["per_class_recall2"] = [hit[y == c].float().mean().item() for c in range(10)]
    res["single_top1"] = single_item_top1(model)
    st["final"] = res
    log("final (best ckpt, 5000 canvases): %s" % json.dumps(res), lf)
    torch.save(st, os.path.join(a.workdir, "state.pt"))
    write_card(a, st, os.path.join(REPO, "models", "MODEL_CARD.md"))
    log("wrote %s (%d bytes) and models/MODEL_CARD.md" % (a.onnx, os.path.getsize(a.onnx)), lf)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp-ratio", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--min-lr", type=float, default=1e-5)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=0, help="fixed step count (else time budget)")
    ap.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget")
    ap.add_argument("--deadline", default="", help="UTC HH:MM to stop training by")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-mimetic", dest="mimetic_on", action="store_false")
    ap.add_argument("--mimetic", type=float, nargs=4, default=[0.7, 0.7, 0.4, 0.4])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 measured 4x faster than 2 on the shared 2-core box)")
    ap.add_argument("--workdir", default="/tmp/train")
    ap.add_argument("--onnx", default=os.path.join(REPO, "models", "fmnist_vit.onnx"))
    ap.add_argument("--no-card", action="store_true")
    ap.add_argument("--finalize", action="store_true")
    ap.add_argument("--resume", default="",
                    help="workdir of an earlier run: start from its best checkpoint with a fresh "
                         "warmup+cosine schedule (a warm restart), continuing its data stream")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.workdir, exist_ok=True)
    lf = open(os.path.join(a.workdir, "train.log"), "a")
    if a.finalize:
        st = torch.load(os.path.join(a.workdir, "state.pt"))
        for k, v in st["args"].items():
            if k not in ("finalize", "workdir", "onnx"):
                setattr(a, k, v)
        finalize(a, lf)
        return

    torch.manual_seed(a.seed)
    t0 = time.time()
    if a.deadline:
        budget = deadline_ts(a.deadline) - t0
    elif a.minutes:
        budget = a.minutes * 60
    else:
        budget = 0
    assert a.steps or budget > 0, "need --steps, --minutes or --deadline"
    log("start: %s  budget %.1f min" % (json.dumps(vars(a)), budget / 60), lf)

    model = VisionTransformer(img_size=64, patch_size=8, embed_dim=a.dim, depth=a.depth,
                              num_heads=a.heads, mlp_ratio=a.mlp_ratio, num_classes=10,
                              mimetic=a.mimetic_on, mimetic_ab=tuple(a.mimetic))
    with torch.no_grad():
        model.head.bias.fill_(math.log(0.2 / 0.8))
    prev = None
    if a.resume:
        prev = torch.load(os.path.join(a.resume, "state.pt"))
        assert prev["config"] == model.config, "--resume: the earlier run had another architecture"
        model.load_state_dict(torch.load(os.path.join(a.resume, "best.pt")))
        log("resumed from %s (best top2 %.4f at step %d of %d)" % (
            a.resume, prev["best"]["top2"], prev["best_step"], prev["step"]), lf)
    nparams = sum(p.numel() for p in model.parameters())
    log("params %d" % nparams, lf)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n
             and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n
                                                               and "cls_token" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)

    ex, ey = make_eval_set(a.eval_count)
    train_ds = FmnistPairs("train", size=64, seed=a.seed)
    # A warm restart keeps the earlier run's step numbers, history and best score,
    # and draws canvases after the ones it used, so none is seen twice.
    step0 = prev["step"] if prev else 0
    pf = Prefetcher(train_ds, a.batch, step0)
    state = dict(config=model.config, args=vars(a), argv=sys.argv[1:], history=[], best={"top2": -1},
                 best_step=0, step=0, nparams=nparams, train_seconds=0.0)
    if prev:
        state.update(history=list(prev["history"]), best=prev["best"], best_step=prev["best_step"],
                     step=step0, phases=prev.get("phases", [dict(args=prev["args"], argv=prev["argv"],
                                                                  steps=prev["step"],
                                                                  seconds=prev["train_seconds"])]))
    step, run_loss, tl = step0, 0.0, time.time()
    prev_seconds = prev["train_seconds"] if prev else 0.0

    def do_eval():
        res, _ = evaluate(model, ex, ey)
        res.update(step=step, minutes=(time.time() - t0 + prev_seconds) / 60)
        state["history"].append(res)
        improved = res["top2"] > state["best"]["top2"]
        log("EVAL step %d  top2 %.4f  item_in_top2 %.4f  top1_true %.4f  loss %.4f%s" % (
            step, res["top2"], res["item_recall2"], res["top1_true"], res["loss"],
            "  *best*" if improved else ""), lf)
        if improved:
            state["best"], state["best_step"] = res, step
            torch.save(model.state_dict(), os.path.join(a.workdir, "best.pt"))
            try:
                export_final(model, a.onnx)
            except Exception as e:  # keep training even if export fails
                log("export failed: %r" % e, lf)
        state["step"], state["train_seconds"] = step, time.time() - t0 + prev_seconds
        torch.save(state, os.path.join(a.workdir, "state.pt"))

    while True:
        elapsed = time.time() - t0
        progress = (step - step0) / a.steps if a.steps else elapsed / budget
        if progress >= 1.0:
            break
        lr = lr_at(a, step - step0, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = pf.get()
        tgt = torch.zeros(len(y), 10).scatter_(1, y, 1.0)
        loss = F.binary_cross_entropy_with_logits(model(x), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        step += 1
        run_loss += loss.item()
        if step % 25 == 0:
            log("step %d  loss %.4f  lr %.2e  %.2f s/step  elapsed %.1f min" % (
                step, run_loss / 25, lr, (time.time() - tl) / 25, (time.time() - t0) / 60), lf)
            run_loss, tl = 0.0, time.time()
        if step % a.eval_every == 0:
            do_eval()
    if not state["history"] or state["history"][-1]["step"] != step:
        do_eval()
    log("training done: %d steps, %.1f min; best top2 %.4f at step %d" % (
        step, (time.time() - t0) / 60, state["best"]["top2"], state["best_step"]), lf)
    if not a.no_card:
        finalize(a, lf)


if __name__ == "__main__":
    main()
