"""Training batches addressed by step: step s of a run that starts at sample position p0 reads
the global positions p0 + s*G ... p0 + (s+1)*G - 1 (G = batch_size x grad_accum x world_size),
flat over epochs.

The data state is therefore one integer (the next position), resume skips by index without
reading a sample, and any dataloader worker can build any step. A rank takes the positions of
the step with offset ≡ rank (mod world size), splits them into `grad_accum` micro-batches of
`batch_size` samples and packs each into sequences of at most `max_length` tokens. Rejected
rows drop out of their micro-batch and are reported with it; a micro-batch left empty becomes
one padding token (no supervised token), so every rank still runs the same forward calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from encoder.packed import PackedVisualTokens
from ovmllm.chat_processor import IGNORE_INDEX
from ovmllm.data.dataset import MixtureDataset, Rejected, Sample
from ovmllm.data.packing import collate, pack


@dataclass
class MicroBatch:
    tensors: dict[str, torch.Tensor]  # input_ids, labels, position_ids, segment_ids
    visual: list[PackedVisualTokens]  # media items in placeholder order
    sample_ids: list[str]

    @property
    def num_supervised(self) -> int:
        """Tokens the loss is taken over (labels are shifted by one in the model)."""
        return int((self.tensors["labels"][:, 1:] != IGNORE_INDEX).sum())

    @property
    def num_tokens(self) -> int:
        return int((self.tensors["segment_ids"] > 0).sum())

    def model_inputs(self, device: torch.device) -> dict:
        """Keyword arguments of the model's forward, on `device`."""
        inputs = {k: v.to(device) for k, v in self.tensors.items()}
        inputs["visual"] = [item.to_device(device) for item in self.visual]
        return inputs


@dataclass
class StepBatch:
    step: int
    micro_batches: list[MicroBatch]
    rejected: list[Rejected] = field(default_factory=list)


class StepBatches(torch.utils.data.Dataset):
    """Map-style over step offsets: item s = this rank's micro-batches of step start_step + s."""

    def __init__(
        self,
        dataset: MixtureDataset,
        start_position: int,
        batch_size: int,
        grad_accum: int,
        max_length: int,
        num_steps: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.dataset = dataset
        self.start_position = start_position
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.max_length = max_length
        self.num_steps = num_steps
        self.rank = rank
        self.world_size = world_size
        self.epoch_size = len(dataset.order(0))
        if self.epoch_size == 0:
            raise ValueError("the data mixture is empty")
        self._orders: dict[int, object] = {}
        self.pad_id = pad_token_id(dataset.processor.tokenizer)

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.world_size

    def __len__(self) -> int:
        return self.num_steps

    def position_after(self, steps: int) -> int:
        return self.start_position + steps * self.samples_per_step

    def _build(self, position: int) -> Sample | Rejected:
        epoch, index = divmod(position, self.epoch_size)
        if epoch not in self._orders:
            self._orders = {epoch: self.dataset.order(epoch)}  # one epoch at a time
        return self.dataset.build_at(self._orders[epoch], index, position)

    def __getitem__(self, offset: int) -> StepBatch:
        if not 0 <= offset < self.num_steps:
            raise IndexError(offset)
        first = self.position_after(offset)
        mine = range(first + self.rank, first + self.samples_per_step, self.world_size)
        built = [self._build(position) for position in mine]
        rejected = [b for b in built if isinstance(b, Rejected)]
        micro = []
        for k in range(self.grad_accum):
            chunk = built[k * self.batch_size : (k + 1) * self.batch_size]
            kept = [s for s in chunk if isinstance(s, Sample)]
            micro.append(micro_batch(kept, self.max_length, self.pad_id))
        return StepBatch(offset, micro, rejected)


def pad_token_id(tokenizer) -> int:
    """The padding id (the end-of-sequence id for tokenizers without one); padding is never
    attended to nor supervised, so its value only has to be a valid id."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def micro_batch(samples: list[Sample], max_length: int, pad_id: int) -> MicroBatch:
    """Samples packed into sequences of at most max_length tokens and collated."""
    if not samples:
        tensors = collate([[([pad_id], [IGNORE_INDEX])]], pad_id)
        tensors["segment_ids"].zero_()  # padding: no sample, no supervised token
        return MicroBatch(tensors, [], [])
    groups = pack([len(s.encoded.input_ids) for s in samples], max_length)
    sequences = [
        [(samples[i].encoded.input_ids, samples[i].encoded.labels) for i in group]
        for group in groups
    ]
    visual = [item for s in samples for item in s.visual]
    return MicroBatch(collate(sequences, pad_id), visual, [s.id for s in samples])
