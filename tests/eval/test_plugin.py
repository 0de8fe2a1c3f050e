"""The lmms-eval model `ovmllm`: strict model_args, chat messages, scoring hooks, and whole runs
of a tiny random checkpoint on local tasks — through the real `lmms_eval` entry point (two
processes) and through `ovmllm eval`'s Python run, in codec (saliency, random) and frames mode."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from PIL import Image

from eval.messages import UnsupportedRequest, to_conversation
from eval.model_args import parse_model_args
from eval.scoring import chosen_letter, edit_distance, relaxed_correct

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


# -- model_args ------------------------------------------------------------------------------


def test_an_unknown_model_arg_is_an_error_naming_it():
    with pytest.raises(ValueError, match="polcy"):
        parse_model_args({"pretrained": "x", "polcy": "random", "batch_size": "4"})
    with pytest.raises(ValueError, match="pretrained"):
        parse_model_args({"policy": "random"})
    with pytest.raises(ValueError, match="budget or budget_frames"):
        parse_model_args({"pretrained": "x", "budget": 64, "budget_frames": 2})


def test_model_args_become_processor_overrides():
    args, harness = parse_model_args(
        {"pretrained": "x", "policy": "random", "controls": "shuffle+nonsalient:0.5",
         "frames": 32, "budget_frames": 4, "batch_size": "8", "device": None}
    )  # fmt: skip
    assert harness == {"batch_size": "8"}
    overrides = args.processor_overrides(saved_video_mode="codec")
    assert "media.codec.policy=random" in overrides
    assert "media.codec.controls=[shuffle,nonsalient:0.5]" in overrides
    assert "media.codec.frames=32" in overrides  # T of the codec selection
    frames_args, _ = parse_model_args({"pretrained": "x", "video_mode": "frames", "frames": 4})
    assert "media.frames=4" in frames_args.processor_overrides(saved_video_mode="codec")
    none_args, _ = parse_model_args({"pretrained": "x", "controls": "none"})
    assert none_args.processor_overrides("codec") == ["media.codec.controls=[]"]


# -- chat messages ---------------------------------------------------------------------------


def test_messages_keep_media_in_placeholder_order():
    image = Image.new("RGB", (8, 8))
    conversation = to_conversation([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "image", "url": image}, {"type": "video", "url": "/v.mp4"},
            {"type": "image", "url": "/b.png"}, {"type": "text", "text": "Which?"}]},
    ])  # fmt: skip
    assert [m.kind for m in conversation.media] == ["image", "video", "image"]
    assert conversation.turns == [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "<image>\n<video>\n<image>\nWhich?"},
    ]


@pytest.mark.parametrize(
    "content, reason",
    [
        ([{"type": "video", "url": "a.mp4"}, {"type": "video", "url": "b.mp4"}], "more than one"),
        ([{"type": "video", "url": {"url": "a.mp4", "video_start": 1.0}}], "video_start"),
        ([{"type": "audio", "url": "a.wav"}], "audio"),
    ],
)
def test_requests_the_model_cannot_answer_are_refused_with_the_reason(content, reason):
    with pytest.raises(UnsupportedRequest, match=reason):
        to_conversation([{"role": "user", "content": content}])


# -- scoring hooks ---------------------------------------------------------------------------


def test_chosen_letter_reads_letters_and_option_texts():
    options = ["red", "green", "blue"]
    assert chosen_letter("B", options) == "B"
    assert chosen_letter("(C) blue", options) == "C"
    assert chosen_letter("A. red.", options) == "A"
    assert chosen_letter("It is green.", options) == "B"
    assert chosen_letter("D", options) is None  # not an option
    assert chosen_letter("red or blue", options) is None  # names two
    moves = ["left", "right", "left, then back right", "right, then back left"]
    assert chosen_letter("left, then back right.", moves) == "C"  # the option it is, whole
    assert chosen_letter("1", ["3", "1", "2", "4"]) == "B"


def _reference_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def test_edit_distance_matches_the_textbook_recurrence():
    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("abcé ") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("abcé ") for _ in range(rng.randint(0, 12)))
        assert edit_distance(a, b) == _reference_distance(a, b), (a, b)


def test_relaxed_accuracy_allows_five_percent_on_numbers_only():
    assert relaxed_correct("2.5", "2.42")  # 3.3% off
    assert not relaxed_correct("2.6", "2.42")  # 7.4% off
    assert relaxed_correct("spain.", "Spain")
    assert not relaxed_correct("Spainish", "Spain")


# -- whole runs on a tiny checkpoint ---------------------------------------------------------


def _metric(results: dict, task: str, metric: str) -> float:
    value = results["results"][task][f"{metric},none"]
    assert isinstance(value, float), results["results"][task]
    return value


def _lmms_eval(launcher: list[str], model_args: str, tasks: str, folder, tmp_path) -> dict:
    """Run lmms-eval's own command; its results JSON (the CLI can exit 0 after a traceback:
    the results JSON and its metric decide)."""
    command = [
        *launcher, "-m", "lmms_eval", "--model", "ovmllm", "--model_args", model_args,
        "--tasks", tasks, "--include_path", str(folder), "--limit", "4", "--batch_size", "2",
        "--output_path", str(tmp_path / "out"), "--log_samples",
    ]  # fmt: skip
    env = {**os.environ, **OFFLINE, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    results_files = list((tmp_path / "out").rglob("*_results.json"))
    assert results_files, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(results_files[0].read_text())


def test_lmms_eval_cli_runs_the_plugin_on_two_processes(tiny_checkpoint, local_tasks, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 -m lmms_eval --model ovmllm` (codec,
    saliency): the requests are split by rank (gloo on CPU; accelerate's `--cpu` would start
    one process) and gathered by lmms-eval."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--main_process_port", "29533"]  # fmt: skip
    model_args = f"pretrained={tiny_checkpoint},cache_dir={tmp_path / 'cache'}"
    tasks = "ovmllm_temporal_event,ovmllm_chartqa_local"
    results = _lmms_eval(launcher, model_args, tasks, local_tasks[0], tmp_path)
    _metric(results, "ovmllm_temporal_event", "accuracy")
    _metric(results, "ovmllm_chartqa_local", "relaxed_accuracy")
    samples = next((tmp_path / "out").rglob("*samples_ovmllm_chartqa_local.jsonl"))
    doc_ids = sorted(json.loads(line)["doc_id"] for line in samples.open())
    assert doc_ids == [0, 1, 2, 3]  # both ranks' answers, gathered
    assert list((tmp_path / "cache").iterdir()), "codec selections are cached on disk"


@pytest.mark.parametrize("mode_args", ["policy=random", "video_mode=frames,frames=4"])
def test_lmms_eval_cli_runs_random_policy_and_frames_mode(
    tiny_checkpoint, local_tasks, tmp_path, mode_args
):
    model_args = f"pretrained={tiny_checkpoint},cache_dir={tmp_path / 'cache'},{mode_args}"
    task = "ovmllm_temporal_direction"
    results = _lmms_eval([sys.executable], model_args, task, local_tasks[0], tmp_path)
    _metric(results, task, "accuracy")
    assert results["n-samples"][task]["effective"] == 2  # the family's 2 test docs
    assert results["config"]["model_args"].endswith(mode_args)


def _run(checkpoint, task_manager, out, names, **model_args):
    from eval.run import EvalRequest, run_eval

    request = EvalRequest(
        model=str(checkpoint), tasks=names, out=str(out), limit=2, batch_size=2,
        model_args={"cache_dir": str(out.parent / "cache"), **model_args},
    )  # fmt: skip
    folder = run_eval(request, task_manager=task_manager, progress=lambda _: None)
    return json.loads((folder / "run.json").read_text()), json.loads(
        (folder / "results.json").read_text()
    )


def test_ovmllm_eval_records_its_settings_and_feeds_the_leaderboard(
    tiny_checkpoint, lmms_task_manager, tmp_path
):
    """Codec with the random policy and frames mode on the same checkpoint, each run's record,
    then `ovmllm leaderboard` over the two results folders."""
    from ovmllm.cli import main

    task = "ovmllm_temporal_direction"
    runs = {
        "random": ({"policy": "random"}, {"video_mode": "codec", "policy": "random"}),
        "frames": ({"video_mode": "frames", "frames": "4"}, {"video_mode": "frames", "frames": 4}),
    }
    for name, (model_args, expected) in runs.items():
        record, results = _run(tiny_checkpoint, lmms_task_manager, tmp_path / name, [task],
                               **model_args)  # fmt: skip
        assert {key: record[key] for key in expected} == expected
        assert record["tower"] == "onevision" and record["tasks"][task]["status"] == "ok"
        assert set(record["versions"]) == {"ovmllm", "lmms_eval", "transformers", "torch"}
        assert record["generation"]["per_task"][task]["max_new_tokens"] == 16
        _metric(results, task, "accuracy")
        assert (tmp_path / name / f"samples_{task}.jsonl").is_file()

    folders = [str(tmp_path / name) for name in runs]
    assert main(["leaderboard", *folders, "--suite", "local", "--out", str(tmp_path / "lb")]) == 0
    markdown = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "tiny codec random" in markdown and "tiny frames" in markdown
    assert "Temporal direction" in markdown
    assert (tmp_path / "lb" / "leaderboard.csv").is_file()
    assert (tmp_path / "lb" / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"


def test_a_missing_video_is_scored_wrong_and_the_run_goes_on(
    tiny_checkpoint, local_tasks, lmms_task_manager, tmp_path
):
    names = ["ovmllm_broken_video_mc", "no_such_task", "ovmllm_chartqa_local"]
    record, results = _run(tiny_checkpoint, lmms_task_manager, tmp_path / "run", names)
    assert record["media_failures"] == 1
    failure = record["media_failure_list"][0]
    assert failure["task"] == "ovmllm_broken_video_mc" and failure["doc_id"] == 1
    assert "missing.mp4" in failure["reason"]
    assert record["tasks"]["no_such_task"]["status"] == "failed"
    assert record["tasks"]["ovmllm_chartqa_local"]["status"] == "ok"
    assert results["n-samples"]["ovmllm_broken_video_mc"]["effective"] == 2


def _chart_requests(local_tasks, count: int, settings: dict) -> tuple[list[dict], list]:
    """The first `count` chartqa_local docs and their generate_until requests, as lmms-eval
    builds them (messages from doc_to_visual and doc_to_text)."""
    from lmms_eval.api.instance import Instance

    from eval.scoring import doc_to_visual

    name = "ovmllm_chartqa_local"
    docs = [json.loads(line) for line in (local_tasks[0] / "chartqa_local.jsonl").open()][:count]

    def doc_to_messages(doc):
        content = [{"type": "image", "url": image} for image in doc_to_visual(doc)]
        return [{"role": "user", "content": [*content, {"type": "text", "text": doc["prompt"]}]}]

    requests = [
        Instance(
            "generate_until",
            (None, doc_to_messages, settings, i, name, "test"),
            i,
            {"task": name, "doc_id": i, "repeats": 1},
        )
        for i in range(len(docs))
    ]
    return docs, requests


def test_answers_equal_a_direct_generate_and_do_not_depend_on_the_batch(
    tiny_checkpoint, local_tasks
):
    from eval.lmms_model import OVMLLMEval
    from ovmllm.model import OVMLLMForCausalLM

    name = "ovmllm_chartqa_local"
    docs, requests = _chart_requests(local_tasks, 3, {"max_new_tokens": 8, "until": ["\n\n"]})
    answers = {}
    for batch_size in (1, 3):
        plugin = OVMLLMEval(
            pretrained=str(tiny_checkpoint), batch_size=batch_size, cache_dir="none"
        )
        plugin.task_dict = {name: {"test": docs}}
        answers[batch_size] = plugin.generate_until(requests)
    assert answers[1] == answers[3]

    model = OVMLLMForCausalLM.from_pretrained(tiny_checkpoint).eval()
    processor = model.processor
    doc = docs[0]
    items = processor.load(images=[Image.open(doc["image"]).convert("RGB")])
    turns = [{"from": "human", "value": "<image>\n" + doc["prompt"]}]
    prompt = torch.tensor([processor.prompt(turns, items)])
    new = model.generate(prompt, visual=items, max_new_tokens=8, do_sample=False,
                         eos_token_id=processor.chat.stop_token_ids)  # fmt: skip
    direct = processor.tokenizer.decode(new[0], skip_special_tokens=True)
    assert answers[1][0] == direct.split("\n\n")[0].strip()
    with pytest.raises(NotImplementedError, match="generate_until tasks only"):
        plugin.loglikelihood(requests)


def test_an_answer_ends_at_the_end_of_turn_token(tiny_checkpoint, local_tasks):
    """The random-init LLM's config names no end-of-sequence id: the plugin stops at the chat
    template's end-of-turn token itself, instead of decoding on to max_new_tokens (the tokens
    after it used to be appended to the answer)."""
    from eval.lmms_model import OVMLLMEval

    plugin = OVMLLMEval(pretrained=str(tiny_checkpoint), cache_dir="none")
    tokenizer, chat = plugin.tokenizer, plugin.processor.chat
    assert chat.end_of_turn and chat.stop_token_ids
    assert tokenizer.convert_tokens_to_ids(chat.end_of_turn) in chat.stop_token_ids
    (answer,) = tokenizer.encode(" yes", add_special_tokens=False)[:1]
    (after,) = tokenizer.encode(" no", add_special_tokens=False)[:1]
    end = chat.stop_token_ids[0]
    calls = []

    def scripted(module, inputs, logits):  # "yes", end of turn, then "no" for ever
        token = (answer, end)[len(calls)] if len(calls) < 2 else after
        calls.append(token)
        boost = torch.zeros(logits.shape[-1])
        boost[token] = 1e4
        return logits + boost

    plugin.model.llm.get_output_embeddings().register_forward_hook(scripted)
    docs, requests = _chart_requests(local_tasks, 1, {"max_new_tokens": 8})
    plugin.task_dict = {"ovmllm_chartqa_local": {"test": docs}}
    assert [text.strip() for text in plugin.generate_until(requests)] == ["yes"]
    assert calls == [answer, end]  # it stopped: nothing was decoded after the end of turn


def _video_requests(local_tasks, count: int) -> tuple[list[dict], list]:
    """The first `count` which_moved docs (a video, four options) as generate_until requests."""
    from lmms_eval.api.instance import Instance

    name = "ovmllm_temporal_which_moved"
    path = local_tasks[0] / "temporal_which_moved.jsonl"
    docs = [json.loads(line) for line in path.open()][:count]

    def doc_to_messages(doc):
        content = [{"type": "video", "url": doc["video"]}, {"type": "text", "text": doc["prompt"]}]
        return [{"role": "user", "content": content}]

    settings = {"max_new_tokens": 16}
    arguments = [(None, doc_to_messages, settings, i, name, "test") for i in range(len(docs))]
    meta = [{"task": name, "doc_id": i, "repeats": 1} for i in range(len(docs))]
    return docs, [Instance("generate_until", arguments[i], i, meta[i]) for i in range(len(docs))]


def test_replies_by_likelihood_are_the_likeliest_option_whole(tiny_checkpoint, local_tasks):
    """answer_by=likelihood answers with the option whose whole reply (end of turn included)
    the model finds likeliest: the same as scoring each option by hand from the full logits,
    at batch 1 and 3."""
    from eval.lmms_model import OVMLLMEval
    from ovmllm.chat_processor import IGNORE_INDEX
    from ovmllm.media import load_video

    docs, requests = _video_requests(local_tasks, 3)
    answers = {}
    for batch_size in (1, 3):
        plugin = OVMLLMEval(pretrained=str(tiny_checkpoint), batch_size=batch_size,
                            cache_dir="none", answer_by="likelihood")  # fmt: skip
        plugin.task_dict = {"ovmllm_temporal_which_moved": {"test": docs}}
        answers[batch_size] = plugin.generate_until(requests)
    assert answers[1] == answers[3]

    model, processor = plugin.model, plugin.processor
    computed = plugin._option_logprobs([plugin._prepare(request) for request in requests])
    for doc, answer, got in zip(docs, answers[1], computed, strict=True):
        item = load_video(doc["video"], processor.media, processor.spec)
        scores = []
        for option in doc["options"]:
            turns = [{"from": "human", "value": "<video>\n" + doc["prompt"]},
                     {"from": "gpt", "value": option}]  # fmt: skip
            sample = processor.encode(turns, [item])
            with torch.no_grad():
                logits = model(torch.tensor([sample.input_ids]), visual=[item]).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            scores.append(sum(logp[i - 1, token].item() for i, token in enumerate(sample.labels)
                              if token != IGNORE_INDEX))  # fmt: skip
            assert processor.tokenizer.decode(
                [t for t in sample.labels if t != IGNORE_INDEX]
            ).startswith(option)  # the reply scored is the option, then the end of turn
        assert got == pytest.approx(scores, abs=1e-3)
        assert answer == doc["options"][scores.index(max(scores))]


def test_likelihood_needs_options_and_records_a_doc_without_them(tiny_checkpoint, local_tasks):
    from eval.lmms_model import OVMLLMEval

    docs, requests = _video_requests(local_tasks, 2)
    docs[1] = {key: value for key, value in docs[1].items() if key != "options"}
    plugin = OVMLLMEval(pretrained=str(tiny_checkpoint), cache_dir="none", batch_size=2,
                        answer_by="likelihood")  # fmt: skip
    plugin.task_dict = {"ovmllm_temporal_which_moved": {"test": docs}}
    first, second = plugin.generate_until(requests)
    assert first in docs[0]["options"] and second == ""
    (failure,) = plugin.media_failures
    assert failure["doc_id"] == 1 and "options" in failure["reason"]
    with pytest.raises(ValueError, match="answer_by='loglik'"):
        parse_model_args({"pretrained": "x", "answer_by": "loglik"})


def test_a_folder_that_is_not_a_checkpoint_is_one_clear_line(tmp_path, capsys):
    from eval.lmms_model import NotACheckpoint, OVMLLMEval
    from ovmllm.cli import main

    with pytest.raises(NotACheckpoint, match="not an ovmllm checkpoint"):
        OVMLLMEval(pretrained=str(tmp_path))
    assert main(["eval", "--model", str(tmp_path), "--tasks", "ovmllm_chartqa_local"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not an ovmllm checkpoint" in err
