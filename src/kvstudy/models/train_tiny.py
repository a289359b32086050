"""`kvstudy train-tiny`: train the built-in retrieval model from a seed, with the tasks' own generator.

The model starts from the analytic retrieval circuit of `circuit.py` (a frozen previous-token head plus a
key-matching head; from random weights the association did not form in thousands of steps here) and is trained
on value-first pairs ("v k" in the context, query "? k" -> "v ."), with a curriculum over context length and
random position jumps in half of the batches so RoPE sees long distances while sequences stay short. Training
teaches the stop token and refines the circuit; the whole run is deterministic for a seed (one CPU thread).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from kvstudy.models.circuit import init_retrieval_circuit
from kvstudy.models.tiny import build_model, build_tokenizer, freeze_previous_token_head
from kvstudy.tasks.haystack import LEXICON, PieceTokenizer
from kvstudy.tasks.kv_retrieval import kv_context

NEEDLE = "{value} {key}"
MAX_POS = 8192
MAX_PAIRS = 64


def training_batch(
    rng, enc: PieceTokenizer, length: int, tokens_per_batch: int, n_queries: int, jumps: bool, single_frac: float = 0.0
):
    """Rows of [context | (? k v .) x n_queries]; loss only on the value and the stop token."""
    rows, targets, positions = [], [], []  # targets[t] = the token position t must predict, or -100
    q_id, stop_id = enc("?")[0], enc(".")[0]
    for _ in range(max(1, tokens_per_batch // (length + 4 * n_queries))):
        many = rng.random() >= single_frac  # single-needle rows teach copying; the rest association
        n_pairs = int(rng.integers(1, min(MAX_PAIRS, (length - 1) // 2) + 1)) if many else 1
        ctx, pairs, _ = kv_context(rng, enc, length, n_pairs, NEEDLE)
        ids, tgt = list(ctx.ids), [-100] * length
        for qi in rng.integers(0, n_pairs, size=n_queries):
            k, v = pairs[qi]
            ids += [q_id, enc(k)[0], enc(v)[0], stop_id]
            tgt += [-100, enc(v)[0], stop_id, -100]  # the label at position t is token t+1
        rows.append(ids)
        targets.append(tgt)
        pos = np.arange(len(ids))
        if jumps:  # a few jumps inside the context; the query block stays contiguous after it
            n_jump = int(rng.integers(1, 5))
            at = np.sort(rng.integers(1, length, size=n_jump))
            budget = MAX_POS - len(ids)
            sizes = rng.integers(0, budget // n_jump + 1, size=n_jump)
            for a, s in zip(at, sizes):
                pos[a:] += s
        positions.append(pos)
    return (
        torch.tensor(rows),
        torch.tensor(targets),
        torch.tensor(np.stack(positions)),
    )


def train(
    out_dir: Path,
    seed: int = 1,
    steps: int = 400,
    max_length: int = 512,
    lr: float = 1e-3,
    single_frac: float = 0.25,
    stage_steps: int = 40,
    log=print,
) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tok = build_tokenizer()
    enc = PieceTokenizer(tok)
    model = build_model(len(tok), seed)
    init_retrieval_circuit(model, tok, LEXICON.keys, LEXICON.values, seed)
    freeze_previous_token_head(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, int(0.04 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)),
    )
    length, t0, history, stage_start = 32, time.time(), [], 0
    stop_id = enc(".")[0]
    for step in range(steps):
        # Position jumps only past the first stage: at 32 tokens they hide the content match behind RoPE rotations.
        ids, tgt, pos = training_batch(
            rng, enc, length, 4096, 16, jumps=bool(step % 2) and length > 32, single_frac=single_frac
        )
        logits = model(input_ids=ids, position_ids=pos, attention_mask=torch.ones_like(ids)).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        mask = (tgt != -100) & (tgt != stop_id)  # accuracy on the answers only
        acc = (logits.argmax(-1)[mask] == tgt[mask]).float().mean().item()
        if step % 25 == 0:
            log(f"step {step} len {length} loss {loss.item():.3f} acc {acc:.3f} {time.time() - t0:.0f}s")
        history.append((step, length, round(loss.item(), 4), round(acc, 4)))
        # Curriculum: longer contexts once answers are right, or after a stage's share of the steps at the latest
        if length < max_length and (acc > 0.9 or step - stage_start >= stage_steps):
            length, stage_start = min(max_length, int(length * 1.5)), step
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    info = {
        "seed": seed,
        "steps": steps,
        "max_length": max_length,
        "lr": lr,
        "single_frac": single_frac,
        "stage_steps": stage_steps,
        "seconds": round(time.time() - t0, 1),
        "final_answer_accuracy": history[-1][3],
    }
    (out_dir / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
