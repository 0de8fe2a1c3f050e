"""Centre shards: the layout, an initialisation independent of the world size, the centres'
own optimizer, and saving / loading a rank's shard with its optimizer state (exact resume)."""

from __future__ import annotations

import pytest
import torch

from train.centres import (
    INIT_BLOCK,
    CentreBank,
    build_centre_banks,
    build_centre_optimizer,
    clip_centre_gradients,
    load_centre_shard,
    save_centre_shard,
    shard_file_name,
    shard_range,
)


@pytest.mark.parametrize("num_classes", [7, 10, 11])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_are_contiguous_blocks_covering_every_class_once(num_classes, world):
    blocks = [shard_range(num_classes, rank, world) for rank in range(world)]
    ids = [c for start, count in blocks for c in range(start, start + count)]
    assert ids == list(range(num_classes))
    counts = [count for _, count in blocks]
    assert counts == sorted(counts, reverse=True) and counts[0] - counts[-1] <= 1


def test_initial_centres_do_not_depend_on_the_world_size():
    classes = INIT_BLOCK + 10  # shards cross the seams of the initialisation blocks
    whole = CentreBank(classes, 2, seed=3).weight
    shards = [CentreBank(classes, 2, rank=r, world_size=3, seed=3).weight for r in range(3)]
    assert torch.equal(torch.cat(shards), whole)
    assert abs(whole.std().item() - 0.01) < 1e-3
    assert not torch.equal(CentreBank(classes, 2, seed=4).weight, whole)
    banks = build_centre_banks({"image": 50, "video": 50}, 2, seed=3)
    assert not torch.equal(banks["image"].weight, banks["video"].weight)


def test_a_state_dict_refuses_a_bank_of_another_layout():
    bank = CentreBank(10, 4, rank=0, world_size=2)
    state = bank.state_dict()
    CentreBank(10, 4, rank=0, world_size=2, seed=9).load_state_dict(state)
    with pytest.raises(ValueError, match="cannot load"):
        CentreBank(10, 4, rank=1, world_size=2).load_state_dict(state)


def test_the_optimizer_has_one_group_per_head_at_its_scaled_rate():
    banks = build_centre_banks({"image": 10, "ocr": 6}, 4)
    opt = build_centre_optimizer(banks, lr=1e-3, weight_decay=0.05, lr_scales={"ocr": 2.0})
    groups = {g["head"]: g for g in opt.param_groups}
    assert groups["image"]["lr"] == 1e-3 and groups["ocr"]["lr"] == 2e-3
    assert groups["ocr"]["params"][0] is banks["ocr"].weight
    with pytest.raises(ValueError, match="unknown heads"):
        build_centre_optimizer(banks, lr=1e-3, weight_decay=0.0, lr_scales={"video": 1.0})


def test_each_head_is_clipped_by_its_own_norm():
    banks = build_centre_banks({"image": 10, "ocr": 6}, 4)
    banks["image"].weight.grad = torch.full((10, 4), 3.0)  # norm 3 * sqrt(40) ~ 19
    banks["ocr"].weight.grad = torch.full((6, 4), 0.1)  # norm ~ 0.49: left alone
    norms = clip_centre_gradients(banks, max_norm=5.0)
    assert norms["image"] == pytest.approx(3.0 * 40**0.5)
    assert banks["image"].weight.grad.norm().item() == pytest.approx(5.0, rel=1e-4)
    assert torch.equal(banks["ocr"].weight.grad, torch.full((6, 4), 0.1))


def _train_step(banks, opt, step: int) -> None:
    for name, bank in banks.items():
        g = torch.Generator().manual_seed(step * 10 + len(name))
        bank.weight.grad = torch.randn(bank.weight.shape, generator=g)
    opt.step()


def test_a_saved_shard_resumes_exactly_and_refuses_another_layout(tmp_path):
    heads = {"image": 12, "video": 9}

    def fresh():
        banks = build_centre_banks(heads, 4, rank=1, world_size=2, seed=0)
        return banks, build_centre_optimizer(banks, lr=1e-2, weight_decay=0.1)

    banks, opt = fresh()
    for step in range(2):
        _train_step(banks, opt, step)
    path = save_centre_shard(tmp_path / shard_file_name(1, 2), banks, opt)
    assert [p.name for p in tmp_path.iterdir()] == ["centres_rank00001_of_00002.safetensors"]
    _train_step(banks, opt, 2)  # the uninterrupted run's third step

    resumed, resumed_opt = fresh()
    load_centre_shard(path, resumed, resumed_opt)
    _train_step(resumed, resumed_opt, 2)
    for name in heads:
        assert torch.equal(resumed[name].weight, banks[name].weight)
        assert torch.equal(resumed_opt.state[resumed[name].weight]["exp_avg_sq"],
                           opt.state[banks[name].weight]["exp_avg_sq"])  # fmt: skip

    other = build_centre_banks(heads, 4, rank=0, world_size=2)
    with pytest.raises(ValueError, match="head 'image' was saved as"):
        load_centre_shard(path, other)
    with pytest.raises(ValueError, match="holds heads"):
        load_centre_shard(path, build_centre_banks({"image": 12}, 4, rank=1, world_size=2))
