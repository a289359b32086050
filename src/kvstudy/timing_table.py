"""Timing results (results/timing/{model}/{length}.json, kvstudy.timing) -> results/tables/timing.csv: one row per
(model, length, press variant) with the median and interval of each measure, and where the study timed cold runs
(`timing.cold`) their status, count and `cold_<measure>` medians and intervals beside the warm ones. Every file is
checked against src/kvstudy/schemas/timing.schema.json first: a bad one is named in one line and no table is
written."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pandas as pd

from kvstudy import schemas
from kvstudy.rawcheck import InvalidResults
from kvstudy.timing import MEASURES
from kvstudy.timing_cold import MEASURES as COLD_MEASURES

SCHEMA = schemas.TIMING
COLUMNS = ["model", "length", "press", "method", "compression_ratio", "status", "repeats", "decode_tokens",
           "coverage", *[f"{m}{s}" for m in MEASURES for s in ("", "_low", "_high")], "cold_status", "cold_runs",
           *[f"cold_{m}{s}" for m in COLD_MEASURES for s in ("", "_low", "_high")], "device", "error"]


class InvalidTiming(InvalidResults):
    """A timing result that is not JSON or does not follow its schema: one line naming it (as a bad raw result)."""

    def __init__(self, line: str):
        ValueError.__init__(self, line)
        self.lines = [line]


def read(path: Path) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
        jsonschema.validate(raw, json.loads(SCHEMA.read_text()))
    except (OSError, ValueError, jsonschema.ValidationError) as e:
        why = e.message if isinstance(e, jsonschema.ValidationError) else str(e).splitlines()[0]
        raise InvalidTiming(f"aggregate: invalid timing result {path}: {why}") from None
    return raw


def rows(raw: dict) -> list[dict]:
    """timing.csv rows of one timing result."""
    job, device = raw["job"], raw["provenance"].get("device")
    out = []
    for v in raw["variants"]:
        row = {"model": job["model"], "length": job["length"], "press": v["press"], "method": v["method"],
               "compression_ratio": v["compression_ratio"], "status": v["status"],
               "repeats": raw["protocol"]["repeats"], "decode_tokens": raw["protocol"]["decode_tokens"],
               "device": device, "error": v.get("error")}
        cover = [s["coverage"] for s in (v.get("summary") or {}).values() if s]
        row["coverage"] = min(cover) if cover else None
        row |= _medians(v.get("summary"), MEASURES, "")
        cold = v.get("cold") or {}
        row |= {"cold_status": cold.get("status"), "cold_runs": len(cold.get("runs") or []) if cold else None}
        row |= _medians(cold.get("summary"), COLD_MEASURES, "cold_")
        out.append(row)
    return out


def _medians(summary: dict | None, measures, prefix: str) -> dict:
    row = {}
    for m in measures:
        s = (summary or {}).get(m) or {}
        row |= {f"{prefix}{m}": s.get("median"), f"{prefix}{m}_low": s.get("low"), f"{prefix}{m}_high": s.get("high")}
    return row


def timing_table(paths) -> pd.DataFrame:
    """timing.csv of the given timing results (header only for none: a study with timing off)."""
    table = pd.DataFrame([r for p in sorted(map(str, paths)) for r in rows(read(Path(p)))], columns=COLUMNS)
    return table.sort_values(["model", "length", "press"], kind="mergesort").reset_index(drop=True)
