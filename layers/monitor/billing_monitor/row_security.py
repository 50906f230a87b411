"""Row level security: does a role see every row of the relations the monitor reads (alerts.md, "The scan sees
every row, or says it cannot")?

PostgreSQL hides the rows of a table with row level security on that no policy lets a role see, without an
error: a role with SELECT and no policy reads zero rows. So, before reading, the scan asks the catalog, for
each relation it reads and each table behind it (a view reads its tables with its owner's rights, or the
caller's when `security_invoker` is on), whether row level security applies to the role that reads the table
(on, and the role has no BYPASSRLS and does not own the table, or the table forces it), and if it does,
whether a permissive policy for the command with the condition `true` applies to that role (granted to it,
to a role it belongs to, or to public) and no restrictive policy does. One catalog query, whatever the size
of the tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

SELECT, UPDATE = "select", "update"
#: pg_policy.polcmd values that govern a command: its own letter, or ALL ('*').
_POLCMD = {SELECT: "r", UPDATE: "w"}
#: Where the fix is written down for the owner.
RUNBOOK_STEP = "docs/deploy.md step 1"

_BLIND_SPOTS = """
with recursive reached(relation, rel, acting, depth) as (
    select c.oid, c.oid, current_user::name, 0
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = %(schema)s and c.relname = any(%(names)s)
  union
    -- the tables (and views) a view reads, as the role it reads them with
    select r.relation, d.refobjid,
           case when coalesce((select o.option_value::bool from pg_options_to_table(v.reloptions) o
                               where o.option_name = 'security_invoker'), false)
                then r.acting else pg_get_userbyid(v.relowner) end,
           r.depth + 1
    from reached r
    join pg_class v on v.oid = r.rel and v.relkind = 'v'
    join pg_rewrite w on w.ev_class = v.oid
    join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = w.oid
                    and d.refclassid = 'pg_class'::regclass and d.refobjid <> v.oid
    where r.depth < 16
),
applying as (                 -- (relation, table, role) where row level security filters the role's rows
    select distinct r.relation, t.oid as tbl, r.acting
    from reached r
    join pg_class t on t.oid = r.rel and t.relkind in ('r', 'p') and t.relrowsecurity
    join pg_roles a on a.rolname = r.acting
    where not (a.rolsuper or a.rolbypassrls)
      and not (pg_has_role(r.acting, t.relowner, 'USAGE') and not t.relforcerowsecurity)
),
policies as (
    select a.relation, a.tbl, a.acting, c.cmd, quote_ident(p.polname) as polname, p.polpermissive,
           coalesce(pg_get_expr(p.polqual, p.polrelid), '') = 'true'
             -- an UPDATE's new row must pass WITH CHECK too (none: USING is used)
             and (c.cmd <> 'update' or coalesce(pg_get_expr(p.polwithcheck, p.polrelid), 'true') = 'true') as whole
    from applying a
    cross join unnest(%(commands)s::text[], %(polcmds)s::"char"[]) as c(cmd, polcmd)
    left join pg_policy p
           on p.polrelid = a.tbl and p.polcmd in (c.polcmd, '*')
          and (0::oid = any(p.polroles)
               or exists (select 1 from unnest(p.polroles) pr where pr <> 0 and pg_has_role(a.acting, pr, 'USAGE')))
)
select (select quote_ident(n.nspname) || '.' || quote_ident(c.relname)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = a.relation) as relation,
       (select quote_ident(n.nspname) || '.' || quote_ident(c.relname)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = a.tbl) as tbl,
       quote_ident(a.acting) as acting, a.cmd,
       coalesce(array_agg(a.polname order by a.polname) filter (where a.polpermissive and a.whole), '{}') as whole,
       coalesce(array_agg(a.polname order by a.polname) filter (where a.polpermissive and not a.whole), '{}') as narrowing,
       coalesce(array_agg(a.polname order by a.polname) filter (where not a.polpermissive), '{}') as restrictive
from policies a
group by a.relation, a.tbl, a.acting, a.cmd
order by 1, 2, 4
"""


@dataclass(frozen=True)
class BlindSpot:
    """A table whose rows row level security may hide from `role` for `command`, reached through `relation`."""

    relation: str               # what the monitor reads, schema-qualified (public.subscriptions)
    table: str                  # the table whose rows are filtered (the relation, or a table behind a view)
    role: str                   # the role the rows are filtered for (the connected role, or a view's owner), quoted
    command: str                # select or update
    narrowing: tuple[str, ...]  # permissive policies that apply, with a condition other than `true` (quoted names)
    restrictive: tuple[str, ...]  # restrictive policies that apply (quoted names)
    whole: bool = False         # a permissive `true` policy applies too (only the restrictive ones hide rows)

    @property
    def through(self) -> str:
        return "" if self.relation == self.table else f" (read through {self.relation})"

    def problem(self) -> str:
        """What hides rows, in words: 'row level security on public.subscriptions lets monitor_reader read no row'."""
        what = "read" if self.command == SELECT else "update"
        where = f"row level security on {self.table}{self.through}"
        if self.restrictive:
            return (f"{where} applies the restrictive {_policies(self.restrictive)} to {self.role}:"
                    f" it may hide rows from it")
        if self.narrowing:
            return (f"{where} lets {self.role} {what} only the rows {_policies(self.narrowing)} allow"
                    f" (no policy for {self.command} to it with the condition true)")
        return f"{where} lets {self.role} {what} no row (no policy for {self.command} applies to it)"

    def fix_sql(self) -> str:
        """The SQL that lets the role see (or update) every row, as the table's owner runs it, on one line: the
        restrictive policies dropped (or exclude the role from them instead), and a permissive `true` policy
        for the role (the runbook's, altered back to `true` when it was narrowed)."""
        statements = [f"drop policy {name} on {self.table};" for name in self.restrictive]
        if not self.whole:
            role = self.role[1:-1].replace('""', '"') if self.role.startswith('"') else self.role
            name = _policy_name(f"billing_monitor_{role.removeprefix('monitor_')}_{self.command}")
            check = " with check (true)" if self.command == UPDATE else ""
            if name in self.narrowing:
                statements.append(f"alter policy {name} on {self.table} to {self.role} using (true){check};")
            else:
                statements.append(f"create policy {name} on {self.table} for {self.command} to {self.role}"
                                  f" using (true){check};")
        return " ".join(statements)


def _policy_name(name: str) -> str:
    """As SQL writes it: plain when it is lower-case letters, digits and '_' (a name starting billing_monitor_ is
    never a key word), else quoted."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _policies(names: tuple[str, ...]) -> str:
    return f"polic{'ies' if len(names) > 1 else 'y'} {', '.join(names)}"


def blind_spots(conn: psycopg.Connection, schema: str, relations: tuple[str, ...],
                commands: tuple[str, ...] = (SELECT,)) -> list[BlindSpot]:
    """Every table behind `schema`.`relations` whose rows row level security may hide from the role reading
    it, for any of `commands`: no permissive `true` policy for it, or a restrictive one. Empty: it sees all."""
    found = []
    rows = conn.execute(_BLIND_SPOTS, {"schema": schema, "names": list(relations), "commands": list(commands),
                                       "polcmds": [_POLCMD[c] for c in commands]}).fetchall()
    for relation, table, role, command, whole, narrowing, restrictive in rows:
        if restrictive or not whole:
            found.append(BlindSpot(relation, table, role, command, tuple(narrowing), tuple(restrictive), bool(whole)))
    return found


def require_every_row(conn: psycopg.Connection, schema: str, relations: tuple[str, ...]) -> None:
    """Stop the scan, before it reads, when row level security may hide rows of what it reads (MonitorError)."""
    from billing_monitor.errors import MonitorError

    spots = blind_spots(conn, schema, relations)
    if spots:
        first = spots[0]
        more = f" (and {len(spots) - 1} more table(s))" if len(spots) > 1 else ""
        raise MonitorError(f"{first.problem()}{more}: the scan would miss customers, so it stops and reports"
                           f" nothing; {RUNBOOK_STEP} creates the policies (`billing-monitor doctor` prints the SQL)")
