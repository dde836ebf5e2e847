"""Values beyond float32 and rating-log layouts that used to be read silently wrong."""

from __future__ import annotations

import pytest

from graphrec.errors import InputFormatError
from graphrec.io import CTRSchema, read_ctr_table, read_interactions
from graphrec.io.describe import describe_file


def test_rating_beyond_float32_names_file_and_line(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t5\t100\n1\t3\t1e39\t101\n")
    with pytest.raises(InputFormatError, match=r"u.data, line 2: .*rating '1e39' overflows"):
        read_interactions(path)


def test_ctr_numeric_beyond_float32_or_infinite_names_file_and_line(tmp_path):
    schema = CTRSchema("clk", categorical=["user"], numeric=["price"])
    for bad in ("1e39", "inf", "-1e40"):
        path = tmp_path / "t.csv"
        path.write_text(f"clk,user,price\n1,a,2.5\n0,b,{bad}\n")
        with pytest.raises(InputFormatError, match=r"t.csv, line 3: .*'price'.*finite float32"):
            read_ctr_table(path, schema)
    path.write_text("clk,user,price\n1,a,3.4e38\n0,b,\n")
    table = read_ctr_table(path, schema)
    assert table.numeric["price"][0] == pytest.approx(3.4e38, rel=1e-6)


def test_double_colon_and_extra_column_logs_are_rating_logs(tmp_path):
    ml1m = tmp_path / "ratings.dat"
    ml1m.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    assert describe_file(ml1m).startswith("Interactions")
    log = read_interactions(ml1m)
    assert (log.num_users, log.num_items, log.num_interactions) == (2, 2, 3)
    assert log.rating.tolist() == [5, 3, 4] and log.timestamp.tolist()[0] == 978300760
    five = tmp_path / "five.tsv"
    five.write_text("1\t2\t5\t100\t7\n2\t3\t4\t101\t8\n3\t2\t1\t102\t9\n")
    text = describe_file(five)
    assert text.startswith("Interactions") and "1 column(s) after the timestamp" in text
    log = read_interactions(five)
    assert log.num_interactions == 3 and log.extra_columns == 1
    assert log.timestamp.tolist() == [100, 101, 102]
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("1\t2\t5\t100\t7\n2\t3\t4\t101\n")
    with pytest.raises(InputFormatError, match="line 2: .*has 4 field.*as many on every line"):
        read_interactions(ragged)


def test_table_without_header_row_is_not_summarised_as_column_names(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("1\t2\t5\t100\tx\n2\t3\t4\t101\ty\n3\t1\t4\t102\tz\n")
    text = describe_file(path)
    assert "3 rows; no header row" in text and "column 5" in text
    named = tmp_path / "t.csv"
    named.write_text("clk,user,price\n1,a,2.5\n0,b,3\n")
    assert "(3 columns, 2 rows)" in describe_file(named)
