"""FuxiCTR's tiny Taobao (Ali-Display-Ad) sample: a CTR table with a click sequence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graphrec.datasets._files import locate
from graphrec.io import CTRSchema, CTRTable, read_ctr_table

__all__ = ["TaobaoTiny", "load_taobao_tiny", "TAOBAO_SCHEMA"]

#: Column roles of the Ali-Display-Ad join (``raw_sample`` + ``ad_feature`` + ``user_profile``
#: + click sequence), as in FuxiCTR's ``tiny_seq`` configuration: the clicked ad groups of
#: ``click_sequence`` share the ``adgroup_id`` vocabulary; ``time_stamp`` is not a feature.
TAOBAO_SCHEMA = CTRSchema(
    label="clk",
    categorical=[
        "userid", "adgroup_id", "pid", "cate_id", "campaign_id", "customer", "brand",
        "cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level",
        "shopping_level", "occupation", "new_user_class_level",
    ],
    numeric=["price"],
    sequence={"click_sequence": "^"},
    shared_vocab={"click_sequence": "adgroup_id"},
    drop=["time_stamp"],
)  # fmt: skip


@dataclass(repr=False)
class TaobaoTiny:
    """Train and test :class:`graphrec.io.CTRTable` encoded with the training vocabulary."""

    train: CTRTable
    test: CTRTable
    root: Path

    @property
    def schema(self) -> CTRSchema:
        return self.train.schema

    def summary(self) -> str:
        return "\n".join(
            [
                f"TaobaoTiny  {self.root} (test uses the train vocabulary)",
                "train: " + self.train.summary(),
                "test:  " + self.test.summary(),
            ]
        )

    def __repr__(self) -> str:
        return f"TaobaoTiny(train={self.train.num_rows}, test={self.test.num_rows})"


def load_taobao_tiny(root: str | Path, *, min_count: int = 1) -> TaobaoTiny:
    """Load ``train_sample.csv`` and ``test_sample.csv`` (plain or ``.gz``) from ``root``.

    The FuxiCTR ``tiny_seq`` sample of Alibaba's Ali-Display-Ad click data (100 + 100 rows),
    read with :data:`TAOBAO_SCHEMA`. Vocabularies are built on the training file (values
    seen fewer than ``min_count`` times map to 0) and reused for the test file, where unseen
    values also map to 0. Research / non-commercial use (Alibaba Tianchi terms).

    Raises:
        DatasetNotFoundError: naming every missing file.
        InputFormatError: a malformed row.
    """
    files = locate(
        "taobao-tiny",
        root,
        ["train_sample.csv", "test_sample.csv"],
        "They are in FuxiCTR's repository under data/tiny_seq/ (reczoo/FuxiCTR).",
    )
    train = read_ctr_table(files["train_sample.csv"], TAOBAO_SCHEMA, min_count=min_count)
    test = read_ctr_table(files["test_sample.csv"], TAOBAO_SCHEMA, vocab=train.vocab)
    return TaobaoTiny(train=train, test=test, root=Path(root).expanduser())
