"""The lmms-eval chat model `ovmllm`: a checkpoint folder answering lmms-eval's requests.

Registered through lmms-eval's `lmms_eval.models` entry point (`eval/plugin.py`), so an unmodified
`python -m lmms_eval --model ovmllm --model_args pretrained=DIR,... --tasks ...` runs it. Requests
are answered greedily in batches of lmms-eval's own `--batch_size`, left-padded; media go through
the checkpoint's processor (codec selections cached on disk per video and settings). A request
whose media cannot be read is answered with "" (scored wrong), logged with its id and reason, and
kept in `media_failures` for the run record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from lmms_eval.api.model import lmms
from loguru import logger
from tqdm import tqdm

from encoder.codec.errors import VideoDecodeError
from eval.messages import Conversation, UnsupportedRequest, to_conversation
from eval.model_args import EvalModelArgs, parse_model_args
from ovmllm.chat_processor import IGNORE_INDEX, EncodedSample
from ovmllm.config import load_config
from ovmllm.media import load_image, load_video
from ovmllm.model import OVMLLMForCausalLM
from ovmllm.multimodal_processor import PROCESSOR_FILE, MultimodalProcessor, ProcessorOverrides

DEFAULT_CACHE = "~/.cache/ovmllm/selections"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What makes one request unanswerable without stopping the run: unreadable or unsupported media
# (VideoDecodeError; ImageDecodeError and UnsupportedRequest are ValueErrors; a missing file is an
# OSError), a conversation the chat template refuses (SampleRejected, a ValueError).
REQUEST_FAILURES = (VideoDecodeError, OSError, ValueError)


@dataclass
class Prepared:
    """One request ready for the model: its media, and the generation prompt or, with
    answer_by=likelihood, the prompt with each option as the reply."""

    items: list
    prompt: list[int] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    replies: list[EncodedSample] = field(default_factory=list)


class NotACheckpoint(ValueError):
    """A folder that is not an ovmllm checkpoint."""


def check_checkpoint(folder: str | Path) -> Path:
    """The folder, if it holds an ovmllm model with its processor; otherwise one clear line."""
    folder = Path(folder).expanduser()
    config = folder / "config.json"
    if not config.is_file():
        raise NotACheckpoint(f"{folder}: not an ovmllm checkpoint (no config.json)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as exc:
        raise NotACheckpoint(f"{config}: unreadable ({exc})") from exc
    if model_type != "ovmllm":
        raise NotACheckpoint(f"{folder}: model_type is {model_type!r}, not an ovmllm checkpoint")
    if not (folder / PROCESSOR_FILE).is_file():
        raise NotACheckpoint(f"{folder}: no {PROCESSOR_FILE} (the media and chat settings)")
    return folder


def saved_video_mode(folder: Path) -> str:
    return json.loads((folder / PROCESSOR_FILE).read_text())["media"].get("video_mode", "codec")


class OVMLLMEval(lmms):
    is_simple = False

    def __init__(self, **kwargs) -> None:
        super().__init__()
        args, harness = parse_model_args(kwargs)
        self.batch_size = _batch_size(harness.get("batch_size", 1))
        self.folder = check_checkpoint(args.pretrained)
        if args.dtype not in DTYPES:
            raise ValueError(f"ovmllm model_args: dtype={args.dtype!r} is not {'|'.join(DTYPES)}")
        self.dtype = args.dtype

        self.accelerator = Accelerator()
        if self.accelerator.num_processes > 1:  # `accelerate launch --num_processes N`
            self._rank = self.accelerator.process_index
            self._world_size = self.accelerator.num_processes
            self._device = self.accelerator.device
        else:
            self._device = _device(harness.get("device"))
        model = OVMLLMForCausalLM.from_pretrained(self.folder, dtype=DTYPES[args.dtype])
        self.model = model.to(self._device).eval()
        self._warned_sampling = False
        self.configure(args)

    def configure(self, args: EvalModelArgs) -> None:
        """Media settings for the requests that follow, the weights staying loaded (an ablation
        runs many settings on one model); the counters start again."""
        if Path(args.pretrained).expanduser() != self.folder or args.dtype != self.dtype:
            raise ValueError("configure changes media settings only, not pretrained or dtype")
        overrides = load_config(
            ProcessorOverrides, None, args.processor_overrides(saved_video_mode(self.folder))
        )
        processor = MultimodalProcessor.from_pretrained(
            self.folder, self.model.tower.spec, overrides
        )
        codec = processor.media.codec
        # The codec config lets `budget` win over `budget_frames`: asking for one clears the other
        # so the asked-for budget is the one in effect whatever the checkpoint saved.
        if args.budget_frames is not None:
            codec.budget = None
        if args.budget is not None:
            codec.budget_frames = None
        if args.cache_dir != "none" and processor.media.video_mode == "codec":
            processor.media.cache_dir = str(Path(args.cache_dir or DEFAULT_CACHE).expanduser())
        self.args, self.processor, self.tokenizer = args, processor, processor.tokenizer
        self.media_failures: list[dict] = []
        self.timing = {"requests": 0, "media_s": 0.0, "generate_s": 0.0}
        self.video_tokens: list[int] = []
        """Visual tokens of each video answered (the budget actually spent)."""

    @property
    def device(self) -> torch.device:
        return self._device

    def clean(self) -> None:
        """Keep the model: lmms-eval calls this after every evaluation and its default drops
        every module, while `ovmllm eval` runs one evaluation per task on one loaded model."""

    # -- lmms-eval's interface ---------------------------------------------------------------

    def loglikelihood(self, requests) -> list:
        tasks = sorted({request.args[-2] if len(request.args) > 2 else "?" for request in requests})
        raise NotImplementedError(
            f"the ovmllm model answers generate_until tasks only (all 16 paper tasks are "
            f"generate_until in lmms-eval 0.7.3); {', '.join(map(str, tasks))} asked for "
            f"loglikelihood scoring (for multiple choice by likelihood, run the generate_until "
            f"task with model_args answer_by=likelihood)"
        )

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("the ovmllm model does not answer multi-round tasks")

    def generate_until(self, requests) -> list[str]:
        answers: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):  # one generation setting per batch
            key = json.dumps(request.args[2], sort_keys=True, default=str)
            groups.setdefault(key, []).append(index)
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="ovmllm answering")
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                texts = self._answer([requests[i] for i in batch])
                for index, answer in zip(batch, texts, strict=True):
                    answers[index] = answer
                progress.update(len(batch))
        progress.close()
        return [answer or "" for answer in answers]

    # -- internals ---------------------------------------------------------------------------

    def _answer(self, requests: list) -> list[str]:
        prepared, live = [], []
        for position, request in enumerate(requests):
            started = time.perf_counter()
            ready = self._prepare(request)
            self.timing["media_s"] += time.perf_counter() - started
            if ready is not None:
                prepared.append(ready)
                live.append(position)
        self.timing["requests"] += len(requests)
        answers = [""] * len(requests)
        if not live:
            return answers
        started = time.perf_counter()
        if self.args.answer_by == "likelihood":
            texts = self._choose(prepared)
        else:
            visual = [item for ready in prepared for item in ready.items]
            texts = self._generate([r.prompt for r in prepared], visual, requests[0].args[2])
        self.timing["generate_s"] += time.perf_counter() - started
        for position, text in zip(live, texts, strict=True):
            answers[position] = text
        return answers

    def _prepare(self, request) -> Prepared | None:
        _, doc_to_messages, _, doc_id, task, split = request.args
        try:
            doc = self.task_dict[task][split][doc_id]
            conversation = to_conversation(doc_to_messages(doc))
            items = self._load_media(conversation)
            if self.args.answer_by == "generation":
                return Prepared(items, prompt=self.processor.prompt(conversation.turns, items))
            options = doc.get("options") if isinstance(doc, dict) else None
            if not isinstance(options, list) or not options:
                raise UnsupportedRequest("answer_by=likelihood needs the doc's `options` list")
            turns = conversation.turns
            replies = [  # the prompt with each option as the reply, end of turn supervised
                self.processor.encode([*turns, {"from": "gpt", "value": str(o)}], items)
                for o in options
            ]
            return Prepared(items, options=[str(o) for o in options], replies=replies)
        except REQUEST_FAILURES as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.warning(f"ovmllm: {task} doc {doc_id} answered empty: {reason}")
            self.media_failures.append({"task": task, "doc_id": doc_id, "reason": reason})
            return None

    def _load_media(self, conversation: Conversation) -> list:
        media, spec = self.processor.media, self.processor.spec
        items = []
        for medium in conversation.media:
            if medium.kind == "image":
                items.append(load_image(medium.source, media, spec))
            else:
                items.append(load_video(medium.source, media, spec))
                self.video_tokens.append(self.processor.num_visual_tokens(items[-1]))
        return items

    def _generate(self, prompts: list[list[int]], visual: list, gen_kwargs: dict) -> list[str]:
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every prompt ends at the last column
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[row, width - len(prompt) :] = 1
        if not self._warned_sampling and (
            gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0
        ):
            logger.warning("ovmllm decodes greedily; the task's sampling settings are ignored")
            self._warned_sampling = True
        new = self.model.generate(
            input_ids.to(self._device),
            visual=[item.to_device(self._device) for item in visual] or None,
            attention_mask=attention_mask.to(self._device),
            max_new_tokens=int(gen_kwargs.get("max_new_tokens") or 128),
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            eos_token_id=self.processor.chat.stop_token_ids,  # the answer ends at end of turn
        )
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        return [_cut(self.tokenizer.decode(row, skip_special_tokens=True), until) for row in new]

    def _choose(self, prepared: list[Prepared]) -> list[str]:
        """Each request's likeliest option."""
        return [
            ready.options[max(range(len(scores)), key=scores.__getitem__)]
            for ready, scores in zip(prepared, self._option_logprobs(prepared), strict=True)
        ]

    @torch.inference_mode()
    def _option_logprobs(self, prepared: list[Prepared]) -> list[list[float]]:
        """Per request, each option's log-probability as the whole reply: one forward over every
        (request, option) row, the reply's token log-probabilities summed, the end-of-turn token
        included (so an option that begins another, "left" of "left, then back right", is not
        favoured for being shorter)."""
        rows = [(n, reply) for n, ready in enumerate(prepared) for reply in ready.replies]
        width = max(len(reply.input_ids) for _, reply in rows)
        input_ids = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (_, reply) in enumerate(rows):  # right padding: positions as in training
            input_ids[row, : len(reply.input_ids)] = torch.tensor(reply.input_ids)
            labels[row, : len(reply.labels)] = torch.tensor(reply.labels)
            attention_mask[row, : len(reply.input_ids)] = 1
        visual = [item.to_device(self._device) for n, _ in rows for item in prepared[n].items]
        out = self.model(
            input_ids.to(self._device),
            labels=labels.to(self._device),
            attention_mask=attention_mask.to(self._device),
            visual=visual or None,
        )
        # The forward returns logits only where the next token is supervised, in sequence order.
        targets = labels[:, 1:]
        supervised = targets != IGNORE_INDEX
        token_logp = torch.log_softmax(out.logits.float(), dim=-1).gather(
            -1, targets[supervised].to(self._device)[:, None]
        )[:, 0]
        row_of_token = torch.arange(len(rows))[:, None].expand_as(targets)[supervised]
        reply_logp = torch.zeros(len(rows), dtype=torch.float64)
        reply_logp.index_add_(0, row_of_token, token_logp.cpu().double())
        scores, start = [], 0
        for ready in prepared:
            scores.append(reply_logp[start : start + len(ready.options)].tolist())
            start += len(ready.options)
        return scores


def _cut(text: str, until: list[str]) -> str:
    for stop in until:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text.strip()


def _batch_size(value) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"ovmllm: --batch_size {value!r} must be a positive integer") from None
    if size < 1:
        raise ValueError(f"ovmllm: --batch_size {value!r} must be a positive integer")
    return size


def _device(requested: str | None) -> torch.device:
    if requested and requested.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(f"ovmllm: --device {requested} but no CUDA device: running on the CPU")
        return torch.device("cpu")
    return torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
