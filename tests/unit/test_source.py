"""The source schema's contract (source.py): doctor's proposed views, the layouts it recognizes, quoting."""

from __future__ import annotations

import pytest

from billing_monitor import source
from billing_monitor.errors import MonitorError


def contract_columns() -> dict[str, dict[str, str]]:
    return {r: dict.fromkeys(source.VIEW_COLUMNS[r], "text") for r in source.RELATIONS}


def test_the_contract_layout_needs_no_view():
    assert source.missing_columns(contract_columns()) == {}
    assert source.recognize_layout(contract_columns()) is None


def test_other_names_are_mapped_and_a_column_without_one_is_left_to_fill_in():
    columns = contract_columns()
    subscriptions = columns["subscriptions"]
    del subscriptions["canceled_at"], subscriptions["ended_at"], subscriptions["updated_at"]
    subscriptions["cancelled_at"] = "timestamp with time zone"
    columns["transactions"]["transaction_type"] = "text"
    proposal = source.propose_views("imports", columns, reader="monitor_reader", writer="monitor_writer")
    assert "t.cancelled_at as canceled_at" in proposal.sql
    assert "null::timestamptz as ended_at" in proposal.sql
    assert "/* FILL IN */ as updated_at" in proposal.sql
    assert proposal.unresolved == ["subscriptions.updated_at"]
    assert "t.transaction_type\n    from imports.transactions t;" in proposal.sql      # the optional column kept
    assert "grant select, update on billing_source.subscriptions to monitor_writer;" in proposal.sql


def test_names_that_need_quotes_are_quoted():
    columns = contract_columns()
    columns["contacts"]["Order"] = "text"
    proposal = source.propose_views('Kajabi "raw"', columns, reader="user")
    assert 'from "Kajabi ""raw""".contacts t;' in proposal.sql
    assert 'to "user";' in proposal.sql


def test_the_kajabi_paypal_v2_layout_is_recognized_by_its_columns():
    columns = contract_columns()
    for relation, names in source.LAYOUTS[source.KAJABI_PAYPAL_V2].items():
        columns[relation].update(dict.fromkeys(names, "text"))
    assert source.recognize_layout(columns) == "kajabi-paypal-v2"


@pytest.mark.parametrize("bad", ["", "50%", "a\x00b"])
def test_a_schema_name_the_queries_cannot_carry_is_one_error(bad):
    with pytest.raises(MonitorError, match="source schema"):
        source.quote_ident(bad)
