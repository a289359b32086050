"""Do a study's attention implementations compute the same model? A check before their speed is compared.

A study that runs one model's weights under several attention implementations (entries with the same path,
revision, dtype and config overrides, e.g. `llama_sdpa` and `llama_flash`) compares kernels, so they must agree on
what they compute. For each such model one prompt of `tokens` seeded random token ids goes through standard
attention (`eager`, the materialised softmax(QK^T)V: the reference) and through every implementation the study
uses; the table gives, per implementation, the largest and the mean absolute difference of its logits to eager's
and the top-1 agreement over the prompt's positions. `equivalent` is a top-1 agreement of at least 0.99 (fused
kernels reorder floating-point sums, so logits differ in the last bits, bf16 more than fp32: the differences are
reported, the verdict is on the predictions). Written by hand: no library compares attention kernels on a model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REFERENCE = "eager"
AGREEMENT = 0.99
COLUMNS = ["model", "path", "dtype", "attn_implementation", "reference", "tokens", "max_abs_diff", "mean_abs_diff",
           "top1_agreement", "equivalent"]


def groups(config: dict) -> list[dict]:
    """The study's models that run under two or more attention implementations: one entry per weights
    ({path, dtype, config_overrides, models: name -> implementation}), in the config's order."""
    by_weights: dict[str, dict] = {}
    for name, m in config["models"].items():
        key = json.dumps([m["path"], m.get("revision"), m["dtype"], m.get("config_overrides")], sort_keys=True)
        entry = by_weights.setdefault(key, {"path": m["path"], "revision": m.get("revision"), "dtype": m["dtype"],
                                            "config_overrides": m.get("config_overrides"), "models": {}})
        entry["models"][name] = m["attn_implementation"]
    return [g for g in by_weights.values() if len(set(g["models"].values())) > 1]


def _logits(group: dict, implementation: str, ids, device: str):
    import torch

    from kvstudy.measure import pick_device
    from kvstudy.models import load_model, model_ref

    # `auto` (the config's eval.device default, passed by the rule) is resolved as eval jobs resolve it.
    model, _ = load_model(model_ref(group), group["dtype"], implementation, pick_device(device),
                          group["config_overrides"])
    with torch.no_grad():
        out = model(input_ids=ids.to(model.device)).logits[0].float().cpu()
    del model
    return out


def compare(group: dict, tokens: int = 256, seed: int = 0, device: str = "cpu") -> list[dict]:
    """One row per implementation of `group` (see `groups`) against eager on one seeded random prompt."""
    import torch

    from kvstudy.models import load_config_tokenizer, model_ref

    cfg, _, _ = load_config_tokenizer(model_ref(group), group["config_overrides"])
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.get_text_config().vocab_size, (1, tokens), generator=generator)
    reference = _logits(group, REFERENCE, ids, device)
    rows = []
    for name, implementation in group["models"].items():
        logits = reference if implementation == REFERENCE else _logits(group, implementation, ids, device)
        diff = (logits - reference).abs()
        agree = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
        rows.append({"model": name, "path": group["path"], "dtype": group["dtype"], "attn_implementation":
                     implementation, "reference": REFERENCE, "tokens": tokens, "max_abs_diff": float(diff.max()),
                     "mean_abs_diff": float(diff.mean()), "top1_agreement": agree, "equivalent": agree >= AGREEMENT})
    return rows


def main(argv=None) -> None:
    import pandas as pd

    from kvstudy.atomic import write_csv_atomic

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", required=True, help="JSON list of kvstudy.attn_equivalence.groups(config)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--tokens", type=int, default=256)
    a = p.parse_args(argv)
    rows = [r for g in json.loads(a.groups) for r in compare(g, a.tokens, device=a.device)]
    write_csv_atomic(pd.DataFrame(rows, columns=COLUMNS), Path(a.out))


if __name__ == "__main__":
    main()
