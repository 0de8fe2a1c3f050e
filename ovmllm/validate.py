"""Setup checks that fail before step 1: model + processor at build (`ovmllm init`, a stage's
fresh model) and, at train start, against the media the data has.

Without them a tower that cannot take the configured video (SigLIP2 with codec video), or a
frame size off the patch grid, builds fine and then every video row is rejected as
`media_failed` while training goes on text-only. Each error is a `ConfigError` naming the keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import pyarrow.compute as pc

from ovmllm.config import ConfigError
from ovmllm.multimodal_processor import MultimodalProcessor

if TYPE_CHECKING:  # the data stack loads only where training does
    import datasets

    from ovmllm.data.dataset import MixtureDataset


def video_item_kind(processor: MultimodalProcessor) -> str:
    """The item kind a video becomes under the processor's media settings."""
    return "codec" if processor.media.video_mode == "codec" else "frames"


def check_frame_size(processor: MultimodalProcessor) -> None:
    """Uniform frames must cut into whole patches (and whole merge windows of the tower)."""
    media, spec = processor.media, processor.spec
    if media.video_mode != "frames" and not media.frame_size:
        return  # no frames are cut, and no frame size was asked for
    size = media.frame_size or spec.frame_size
    unit = spec.patch_size * spec.spatial_merge
    if size % unit:
        key = f"media.frame_size={size}" if media.frame_size else f"the default frame size {size}"
        m = spec.spatial_merge
        merge = f" x its {m}x{m} merge" if m > 1 else ""
        raise ConfigError(
            f"{key} is not a multiple of tower.name={spec.name}'s patch {spec.patch_size}{merge} "
            f"(= {unit} px); set media.frame_size to a multiple of {unit}"
        )


def encoding_problem(processor: MultimodalProcessor, item_kind: str) -> str:
    """Why the model cannot encode items of `item_kind` ("" when it can), naming the keys."""
    spec, media = processor.spec, processor.media
    if item_kind not in spec.kinds:
        fix = "; set media.video_mode=frames" if item_kind == "codec" else ""
        mode = f" media.video_mode={media.video_mode}" if item_kind != "image" else " images"
        return (
            f"tower.name={spec.name} cannot take{mode} (it takes {', '.join(sorted(spec.kinds))})"
            + fix
        )
    try:
        processor.connector.check_items({item_kind})
    except ValueError as exc:
        return str(exc)
    return ""


def check_processor(processor: MultimodalProcessor) -> None:
    """At build: every kind the media settings produce (images, and videos in the configured
    video mode) is one the tower and connector take, and frames cut into whole patches."""
    for kind in ("image", video_item_kind(processor)):
        problem = encoding_problem(processor, kind)
        if problem:
            raise ConfigError(problem)
    check_frame_size(processor)


def media_in_rows(rows: datasets.Dataset) -> Iterator[tuple[str, str]]:
    """(media kind, id of the first row with it) for `image` and `video` rows present, read
    from the Arrow columns (no Python pass over the rows)."""
    table = rows.data.table
    masks = {
        "image": pc.greater(pc.list_value_length(table["images"]), 0),
        "video": pc.not_equal(table["video"], ""),
    }
    for kind, mask in masks.items():
        first = pc.index(mask, True).as_py()
        if first >= 0:
            yield kind, table["id"][first].as_py()


def check_training_setup(
    processor: MultimodalProcessor, datasets: Iterable[MixtureDataset]
) -> None:
    """At train start (model and data loaded): frames cut into whole patches, and each media
    kind any data source has is one the model encodes."""
    check_frame_size(processor)
    for dataset in datasets:
        for source, rows in zip(dataset.mixture.sources, dataset.rows, strict=True):
            for kind, row_id in media_in_rows(rows):
                item_kind = "image" if kind == "image" else video_item_kind(processor)
                problem = encoding_problem(processor, item_kind)
                if problem:
                    raise ConfigError(
                        f"data source {source.name!r} ({source.data}) has {kind} rows (e.g. id "
                        f"{row_id!r}) that the model cannot encode: {problem}"
                    )
