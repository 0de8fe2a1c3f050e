"""Trainability by registered part names, per-part learning rates, frozen weights stay put."""

import pytest
import torch
from torch import nn

from train.modules import (
    PartConfig,
    TrainabilityConfig,
    apply_trainability,
    build_optimizer,
    optimizer_groups,
)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tower = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.connector = nn.Linear(4, 6)
        self.llm = nn.Linear(6, 3)
        self.llm_connector_like = nn.Linear(3, 3)  # a substring trap: never addressed

    def forward(self, x):
        return self.llm_connector_like(self.llm(self.connector(self.tower(x))))


def test_align_trains_only_the_connector_and_frozen_weights_do_not_move():
    torch.manual_seed(0)
    model = Toy()
    cfg = TrainabilityConfig(base_lr=1e-3)  # the align default: connector only
    counts = apply_trainability(model, cfg)
    assert counts == {"tower": 0, "connector": 30, "llm": 0}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3]
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    after = model.state_dict()
    for key in before:
        moved = not torch.equal(before[key], after[key])
        assert moved == key.startswith("connector."), key


def test_instruct_learning_rates_per_part():
    cfg = TrainabilityConfig(
        base_lr=1e-5,
        weight_decay=0.1,
        parts={"tower": PartConfig(train=True, lr=2e-6), "connector": PartConfig(train=True),
               "llm": PartConfig(train=True, lr_scale=1.0)},
    )  # fmt: skip
    model = Toy()
    apply_trainability(model, cfg)
    groups = {g["name"]: (g["lr"], g["weight_decay"]) for g in optimizer_groups(model, cfg)}
    assert groups["tower"] == (2e-6, 0.1) and groups["tower.no_decay"] == (2e-6, 0.0)
    assert groups["connector"] == (1e-5, 0.1) and groups["llm"] == (1e-5, 0.1)


def test_unknown_parts_and_nothing_trainable_are_errors():
    with pytest.raises(ValueError, match="unknown model parts"):
        TrainabilityConfig(parts={"projector": PartConfig(train=True)})
    with pytest.raises(ValueError, match="no part is trainable"):
        optimizer_groups(Toy(), TrainabilityConfig(parts={}))
