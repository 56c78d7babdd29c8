"""The results table: one row per point, written as CSV and Parquet (atomically).

Columns (the scaling-law fit reads them; keep their names):
  point           stable id of the point (hash of its swept values)
  status          ok | failed
  <dotted key>    one column per swept key, e.g. pretrain.lr
  optimizer, lr   what the trained stage actually used (swept or not: the plots group by them)
  n_params        non-embedding parameters of the trained model (Kaplan's N)
  n_params_total  every parameter, tied embedding counted once
  tokens          training tokens seen (steps x batch x seq_len)
  flops           6 x n_params x tokens (the usual C = 6ND estimate)
  val_loss        final validation cross-entropy (nats/token)
  val_ppl         exp(val_loss)
  train_loss      training loss of the last step
  steps, rollbacks, tokens_per_s, wall_s (training stage time), run_dir, error (failed points only)

    from smoledge.sweep.results import read_table
    rows = read_table("runs/quickstart/sweep/results.csv")
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from smoledge.io import atomic_path, atomic_write_text

CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"
# Columns after the swept keys, in this order (a row may lack some: failed points have no losses).
COLUMNS = ("optimizer", "lr", "n_params", "n_params_total", "tokens", "flops", "val_loss", "val_ppl",
           "train_loss", "steps", "rollbacks", "tokens_per_s", "wall_s", "run_dir", "error")
FLOAT_COLUMNS = ("lr", "flops", "val_loss", "val_ppl", "train_loss", "tokens_per_s", "wall_s")
INT_COLUMNS = ("n_params", "n_params_total", "tokens", "steps", "rollbacks")
TEXT_COLUMNS = ("point", "status", "optimizer", "run_dir", "error")


def is_embedding(name: str) -> bool:
    """Token embedding and (untied) output head: parameters that scale with vocabulary, not depth."""
    return "embed_tokens" in name or "lm_head" in name


def param_counts(model_dir: str | Path) -> tuple[int, int]:
    """(non-embedding, total) parameters of a saved HF model, from the safetensors headers alone."""
    from safetensors import safe_open

    non_embedding = total = 0
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors in {model_dir}")
    for path in files:
        with safe_open(str(path), "np") as f:
            for name in f.keys():
                n = math.prod(f.get_slice(name).get_shape())
                total += n
                if not is_embedding(name):
                    non_embedding += n
    return non_embedding, total


def ok_row(point_id: str, values: dict[str, Any], trained: dict[str, Any], metrics: dict[str, Any],
           model_dir: Path, run_dir: Path, wall_s: float) -> dict[str, Any]:
    """A finished point's row from its training stage's record metrics."""
    n_params, n_total = param_counts(model_dir)
    tokens = int(metrics["tokens"])
    return {
        "point": point_id, "status": "ok", **values,
        "optimizer": trained["optimizer"], "lr": float(trained["lr"]),
        "n_params": n_params, "n_params_total": n_total, "tokens": tokens,
        "flops": float(6 * n_params * tokens),
        "val_loss": float(metrics["val_loss"]), "val_ppl": float(metrics["val_ppl"]),
        "train_loss": float(metrics["final_train_loss"]),
        "steps": int(metrics["steps"]), "rollbacks": int(metrics.get("rollbacks", 0)),
        "tokens_per_s": float(metrics.get("tokens_per_s", math.nan)), "wall_s": round(float(wall_s), 2),
        "run_dir": str(run_dir), "error": "",
    }


def failed_row(point_id: str, values: dict[str, Any], trained: dict[str, Any], run_dir: Path, wall_s: float,
               error: str) -> dict[str, Any]:
    """Same columns as a finished row; what the point never measured is None (null / an empty CSV cell)."""
    return {"point": point_id, "status": "failed", **values, **{c: None for c in COLUMNS},
            "optimizer": trained["optimizer"], "lr": float(trained["lr"]), "wall_s": round(float(wall_s), 2),
            "run_dir": str(run_dir), "error": error}


def columns(swept: list[str]) -> list[str]:
    return ["point", "status", *swept, *COLUMNS]


def _cell(v: Any) -> Any:
    """Lists and mappings (a swept `data.languages`) go in as JSON text, so every column is a scalar."""
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def write_table(rows: list[dict[str, Any]], swept: list[str], out_dir: Path) -> tuple[Path, Path]:
    """results.csv and results.parquet in `out_dir`, same rows and columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = columns(swept)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else _cell(row.get(c)) for c in cols})
    csv_path = atomic_write_text(out_dir / CSV_NAME, buf.getvalue())

    data: dict[str, list[Any]] = {c: [_cell(r.get(c)) for r in rows] for c in cols}
    fields = []
    for c in cols:
        if c in FLOAT_COLUMNS:
            fields.append(pa.field(c, pa.float64()))
        elif c in INT_COLUMNS:
            fields.append(pa.field(c, pa.int64()))
        else:
            fields.append(pa.field(c, pa.infer_type(data[c]) if any(v is not None for v in data[c]) else pa.string()))
    table = pa.table(data, schema=pa.schema(fields))
    parquet_path = out_dir / PARQUET_NAME
    with atomic_path(parquet_path) as tmp:
        pq.write_table(table, tmp)
    return csv_path, parquet_path


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results table (CSV or Parquet) with the numeric columns as numbers."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for c, v in raw.items():
                if v == "" and c not in TEXT_COLUMNS:
                    row[c] = None  # what Parquet holds for a failed point's missing numbers
                elif c in FLOAT_COLUMNS:
                    row[c] = float(v)
                elif c in INT_COLUMNS:
                    row[c] = int(v)
                elif c in TEXT_COLUMNS:
                    row[c] = v
                else:
                    row[c] = _swept_value(v)
            rows.append(row)
    return rows


def _swept_value(text: str) -> Any:
    """A swept value from CSV text: numbers, booleans and JSON lists come back typed, names stay text
    (CSV has no types; the Parquet file keeps the exact ones)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def best_row(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The finished point with the lowest finite `metric` (a NaN loss is a diverged run, never best)."""
    ok = [r for r in rows if r["status"] == "ok" and r.get(metric) is not None and math.isfinite(r[metric])]
    return min(ok, key=lambda r: r[metric]) if ok else None


def text_table(rows: list[dict[str, Any]], swept: list[str]) -> str:
    """The table for a terminal: id, swept values, N, tokens, losses, time."""
    head = ["point", "status", *swept, "n_params", "tokens", "val_loss", "train_loss", "wall_s"]
    lines = [head]
    for r in rows:
        cells = []
        for c in head:
            v = r.get(c)
            cells.append("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(_cell(v)))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
