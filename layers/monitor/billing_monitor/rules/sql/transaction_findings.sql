-- uses: subs
-- One pass over transactions for orphaned_transaction, the charges of each billing_disconnect after
-- its Kajabi cancellation (the disconnects come in as parameters from subscription_findings) and
-- post_cancellation_charge.
--
-- Stage 1 reads every transaction once, in parallel, and keeps a superset of the rows any of those
-- checks can report, with one hash probe per row: an anti join against the contacts, each carrying
-- the earliest end of its contact's ended subscriptions. A row comes out when it has no contact, or
-- its contact's row fails the join filter: it is dated after that earliest end (which covers every
-- unexplained candidate charge and a disconnect's candidate charges: they follow an ended match),
-- it is linked to an ended subscription (of another contact: its own contact's row already covers
-- its own), it is linked to a disconnect's PayPal subscription, or it was imported after
-- newest_hint.sql's bound (a few rows, if any: the newest import is the bound or among them, see the
-- last branch). The ended subscriptions come in as array literals from ended_subscriptions.sql (hashed `= any` look-ups, no per-row join).
-- Stage 2 applies the exact rules to those few rows. A charge names its matching set by key:
-- (subscription id, '#own') when it is for a subscriptions row, else (contact id, currency) with
-- the amount within tolerance (it is a candidate).
disconnects as (
    select * from unnest(%(d_pid)s::uuid[], %(d_contact)s::uuid[], %(d_cur)s::text[],
                         %(d_amount)s::numeric[], %(d_canceled)s::timestamptz[])
             as d(pid, contact_id, cur, amount, canceled_at)
),
stage1 as materialized (
    select t.id, t.contact_id, t.subscription_id, t.amount, t.transaction_date, t.status::text as status,
           t.source::text as source, t.currency::text as currency, t.created_at,
           {transaction_type} as transaction_type     -- the optional column, as text (null when absent)
    from {source}.transactions t
    where not exists (
        select 1
        from {source}.contacts c
        left join (select e.contact_id, min(e.end_time) as first_end
                   from unnest(%(ended_contact)s::uuid[], %(ended_at)s::timestamptz[]) as e(contact_id, end_time)
                   group by e.contact_id) ce on ce.contact_id = c.id
        where c.id = t.contact_id
          and (ce.first_end is null or t.transaction_date <= ce.first_end)
          and not coalesce(t.transaction_date > %(first_end)s
                           and t.subscription_id = any(%(ended_id)s::uuid[]), false)
          and not coalesce(t.subscription_id = any(%(d_pid)s::uuid[]), false)
          -- the rows imported after newest_hint.sql's bound come out too: the newest is the bound or among them
          and t.created_at <= %(newest_hint)s)
),
interesting as materialized (
    -- few rows: a primary-key look-up each (scalar subqueries), not a hash of the whole table
    select s1.*, upper(btrim(s1.currency, E' \t\r\n') collate "C") as cur,
           (select c.id from {source}.contacts c where c.id = s1.contact_id) is null as orphaned,
           (select own.id from {source}.subscriptions own where own.id = s1.subscription_id) as own_id
    from stage1 s1
),
charges as (
    select i.*, coalesce(i.own_id, i.contact_id) as k_id,
           case when i.own_id is null then i.cur else '#own' end as k_tag
    from interesting i
    where lower(btrim(i.status, E' \t\r\n') collate "C") in ('completed')
      and coalesce(lower(btrim(i.transaction_type, E' \t\r\n') collate "C") not in ('refund'), true)
      and i.amount is not null           -- an amount nobody knows is no money to count (rule-choices.md)
),
in_sets as materialized (            -- one pass over subscriptions for every set the charges name
    select s.* from subs s
    where s.id in (select own_id from charges) or s.contact_id in (select contact_id from charges)
),
set_members as materialized (
    select s.id as sid, s.id as k_id, '#own' as k_tag, false as by_amount, s.*
    from in_sets s where s.id in (select own_id from charges)
    union all
    select s.id, s.contact_id, s.cur, true, s.*
    from in_sets s where s.contact_id in (select contact_id from charges)
),
unexplained as (
    select ch.*
    from charges ch
    where exists (
              select 1 from set_members m
              where m.k_id = ch.k_id and m.k_tag = ch.k_tag
                and (not m.by_amount or abs(m.amount - ch.amount) <= %(tol)s))
      and not exists (               -- nothing in the set is live or ends at/after the charge
              select 1 from set_members m
              where m.k_id = ch.k_id and m.k_tag = ch.k_tag
                and (not m.by_amount or abs(m.amount - ch.amount) <= %(tol)s)
                and (not m.ended or m.end_time >= ch.transaction_date))
),
latest_ended as (
    select distinct on (u.id) u.id, m.sid, m.paypal_id, m.kajabi_id_text, m.amount, m.cur, m.cycle
    from unexplained u
    join set_members m on m.k_id = u.k_id and m.k_tag = u.k_tag
                      and (not m.by_amount or abs(m.amount - u.amount) <= %(tol)s)
    order by u.id, m.end_time desc, m.sid
)
select 'orphaned_transaction' as kind, i.id as transaction_id, i.contact_id, i.amount, i.cur,
       i.transaction_date, i.own_id as subscription_id, null as paypal_id, null as kajabi_id_text,
       null::numeric as subscription_amount, null as subscription_cur, null as subscription_cycle
from interesting i where i.orphaned
union all
select 'disconnect_charge', ch.id, ch.contact_id, ch.amount, ch.cur, ch.transaction_date, d.pid,
       null, null, null, null, null
from charges ch
join disconnects d on d.pid = ch.own_id                                    -- for P
where lower(btrim(ch.source, E' \t\r\n') collate "C") = 'paypal' and ch.transaction_date > d.canceled_at
union all
select 'disconnect_charge', ch.id, ch.contact_id, ch.amount, ch.cur, ch.transaction_date, d.pid,
       null, null, null, null, null
from charges ch
join disconnects d on d.contact_id = ch.contact_id and d.cur = ch.cur      -- a candidate for P
                  and abs(ch.amount - d.amount) <= %(tol)s
where ch.own_id is null
  and lower(btrim(ch.source, E' \t\r\n') collate "C") = 'paypal' and ch.transaction_date > d.canceled_at
union all
select 'unexplained_charge', u.id, u.contact_id, u.amount, u.cur, u.transaction_date, l.sid,
       l.paypal_id, l.kajabi_id_text, l.amount, l.cur, l.cycle
from unexplained u join latest_ended l on l.id = u.id
union all                                  -- stale_import: the newest import, from the same pass
select 'newest_import', null, null, null, null, (select max(s1.created_at) from stage1 s1), null,
       null, null, null, null, null
