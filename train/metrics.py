"""Run logging on rank 0: a progress bar (loss, lr, tokens/s, ETA), `metrics.jsonl` in the run
folder, wandb when configured, and `loss.png` at the end.

wandb runs online only when a key is configured (WANDB_API_KEY or a netrc entry); otherwise in
offline mode, and a wandb failure disables wandb with a warning instead of stopping training.
"""

from __future__ import annotations

import json
import netrc
import os
import warnings
from pathlib import Path

from tqdm import tqdm

from encoder.files import atomic_file, write_text_atomic
from train.config import StageConfig

METRICS_FILE = "metrics.jsonl"
REJECTED_FILE = "rejected.jsonl"  # every skipped row: step, position, id, reason


def _wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class RunLogger:
    def __init__(self, cfg: StageConfig, total_steps: int, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = Path(cfg.output_dir) / METRICS_FILE
        self.bar = None
        self.wandb = None
        if not enabled:
            return
        # a resumed run rewrites the steps after its checkpoint
        for name in (METRICS_FILE, REJECTED_FILE):
            self._keep_until(self.path.with_name(name), start_step)
        self.bar = tqdm(total=total_steps, initial=start_step, desc=cfg.name, dynamic_ncols=True)
        if cfg.wandb.project:
            self.wandb = self._start_wandb(cfg)

    @staticmethod
    def _keep_until(path: Path, step: int) -> None:
        if not path.is_file():
            return
        kept = [json.dumps(row) for row in _rows(path) if row.get("step", 0) <= step]
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    @staticmethod
    def _start_wandb(cfg: StageConfig):
        mode = cfg.wandb.mode or ("online" if _wandb_key_configured() else "offline")
        try:
            import wandb

            return wandb.init(
                project=cfg.wandb.project,
                name=cfg.wandb.name or cfg.run_name,
                dir=cfg.output_dir,
                mode=mode,
                config={"stage": cfg.name, "run": cfg.run_name},
            )
        except Exception as exc:  # logging must never stop a run
            warnings.warn(f"wandb disabled: {exc}", stacklevel=2)
            return None

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.bar.update(row["step"] - self.bar.n)
        self.bar.set_postfix(
            loss=f"{row['loss']:.4f}", lr=f"{max(row['lr'].values()):.2e}",
            tok_s=f"{row['tokens_per_s']:.0f}",
        )  # fmt: skip
        if self.wandb is not None:
            flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
            flat.update({f"lr/{name}": lr for name, lr in row["lr"].items()})
            try:
                self.wandb.log(flat, step=row["step"])
            except Exception as exc:
                warnings.warn(f"wandb disabled: {exc}", stacklevel=2)
                self.wandb = None

    def rejected(self, step: int, position: int, sample_id: str, reason: str) -> None:
        if not self.enabled:
            return
        row = {"step": step, "position": position, "id": sample_id, "reason": reason}
        with self.path.with_name(REJECTED_FILE).open("a") as f:
            f.write(json.dumps(row) + "\n")
        tqdm.write(f"skipped sample {sample_id!r} (position {position}): {reason}")

    def note(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        if self.wandb is not None:
            self.wandb.finish()
        rows = read_metrics(self.path)
        if rows:
            plot_loss(rows, self.path.with_name("loss.png"))


def _rows(path: Path) -> list[dict]:
    """The JSON lines of a file; a line cut short by a kill mid-append is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    return _rows(path) if path.is_file() else []


def plot_loss(rows: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (token mean, global batch)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
