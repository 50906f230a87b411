"""The database roles exactly as docs/deploy.md tells the owner to create them."""

from __future__ import annotations

import re
from pathlib import Path

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
PLACEHOLDERS = {"reader": "CHANGE-ME-READER-PASSWORD", "writer": "CHANGE-ME-WRITER-PASSWORD"}


def role_sql(reader_password: str, writer_password: str) -> str:
    """The ```sql block after the runbook's `<!-- roles.sql` marker, with the two passwords filled in."""
    text = RUNBOOK.read_text()
    found = re.search(r"<!-- roles\.sql.*?-->\s*```sql\n(.*?)```", text, re.DOTALL)
    assert found, f"no roles.sql block in {RUNBOOK}"
    sql = found.group(1)
    for placeholder, password in ((PLACEHOLDERS["reader"], reader_password), (PLACEHOLDERS["writer"], writer_password)):
        assert placeholder in sql
        assert "'" not in password
        sql = sql.replace(placeholder, password)
    return sql
