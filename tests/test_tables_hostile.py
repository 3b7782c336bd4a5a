"""Hostile tree tables: every consumer (search, bot, Space browse, train --from-table, lineage --table) reads them
through `TableFiles.read_columns`, which checks each shard's footer before decoding anything (docs/security.md)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_probex.errors import BadFileError
from hf_probex.scan.publish import TableError, folder_table
from hf_probex.scan.table import SCHEMA

COLUMNS = ["repo_id", "labels"]
CARD = "---\nhf_probex:\n  scan_of: acme/root\n---\n# a tree table\n"


def _rows(n: int = 1, repo_id: str = "acme/child") -> pa.Table:
    columns = {name: pa.nulls(n, type=SCHEMA.field(name).type) for name in SCHEMA.names}
    columns["repo_id"] = pa.array([repo_id] * n)
    columns["labels"] = pa.array([[{"value": "seven", "source": "config.json id2label"}]] * n,
                                 type=SCHEMA.field("labels").type)
    return pa.table(columns, schema=SCHEMA)


def _folder(tmp_path, *shards: pa.Table):
    folder = tmp_path / "table"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(CARD)
    for i, shard in enumerate(shards):
        pq.write_table(shard, folder / "data" / f"shard-{i:05d}.parquet", compression="zstd")
    return folder


def _with(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def test_a_table_hf_probex_writes_is_read(tmp_path):
    assert folder_table(_folder(tmp_path, _rows(3), _rows(2))).read_columns(COLUMNS).num_rows == 5


HOSTILE = {
    "labels as strings": lambda: _with(_rows(), "labels", pa.array(["seven"])),
    "labels with an extra field": lambda: _with(_rows(), "labels", pa.array(
        [[{"value": "seven", "source": "x", "extra": "y"}]])),
    "more rows than a shard holds (nulls compress to nothing)": lambda: pa.table(
        {"repo_id": pa.nulls(60_000, pa.string()), "labels": pa.nulls(60_000, SCHEMA.field("labels").type)}),
    "a 5 MB repo id": lambda: _rows(1, "a/" + "x" * 5_000_000),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_shard_is_one_line_before_it_is_decoded(tmp_path, case):
    table = folder_table(_folder(tmp_path, _rows(2), HOSTILE[case]()))  # beside a good shard: shards of two schemas
    with pytest.raises(TableError, match="is not a tree table shard this hf_probex can read") as err:
        table.read_columns(COLUMNS)
    assert len(str(err.value).splitlines()) == 1 and len(str(err.value)) < 400


@pytest.mark.parametrize("linked", ["data", "README.md"])
def test_a_table_folder_whose_files_link_out_of_it_is_refused(tmp_path, linked):
    elsewhere = _folder(tmp_path / "elsewhere", _rows(1, "secret/row"))
    folder = _folder(tmp_path, _rows(1))
    target = folder / linked
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    target.symlink_to(elsewhere / linked)
    with pytest.raises(BadFileError, match="is a link"):
        folder_table(folder)
