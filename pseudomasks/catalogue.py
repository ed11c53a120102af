"""Reading the catalogue and choosing each shard's rows.

Only training rows get maps, as the student distils them during training and never sees maps at
test time, unless the teacher crops (``teacher.crop_margin``): then every row gets one, because
the student crops test images to the box recorded with the map too. Shard ``i`` of ``N`` takes
rows ``i::N`` of those rows sorted by image_id, a rule that Snakemake jobs and the index can each
apply without talking to each other.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pseudomasks.errors import UserError

REQUIRED_COLUMNS = ("image_id", "path", "split")


def read_catalogue(path: Path) -> pd.DataFrame:
    """All rows as strings (empty cells are '')."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise UserError(f"catalogue {path}: file not found; build it first") from exc
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"catalogue {path}: cannot be read as CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"catalogue {path}: missing column '{missing[0]}'")
    duplicated = frame["image_id"][frame["image_id"].duplicated()]
    if len(duplicated):
        raise UserError(f"catalogue {path}: image_id {duplicated.iloc[0]!r} appears twice")
    return frame


def shard_rows(
    frame: pd.DataFrame, shard: int, num_shards: int, every_split: bool = False
) -> list[dict[str, str]]:
    """The training rows (all rows with ``every_split``) of shard ``shard`` (0-based) of
    ``num_shards``."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise UserError(
            f"--shard {shard} --num-shards {num_shards}: need num_shards >= 1 and "
            "0 <= shard < num_shards"
        )
    rows = frame if every_split else frame[frame["split"] == "train"]
    rows = rows.sort_values("image_id", kind="stable")
    return rows.iloc[shard::num_shards].to_dict("records")
