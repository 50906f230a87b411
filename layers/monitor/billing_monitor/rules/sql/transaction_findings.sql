-- uses: subs
-- One pass over transactions for orphaned_transaction, the charges of each billing_disconnect after
-- its Kajabi cancellation (the disconnects come in as parameters from subscription_findings) and
-- post_cancellation_charge.
--
-- Stage 1 reads every transaction once, in parallel, with hash probes on uuids and timestamp
-- comparisons only, and keeps a superset of the rows any of those checks can report: no contact;
-- linked to a disconnect's PayPal subscription; after the end of an ended subscription it is linked
-- to, or of one of its contact's (which covers a disconnect's candidate charges: they come after its
-- ended Kajabi match). A row can come out more than once; stage 2 dedupes.
-- Stage 2 applies the exact rules to those few rows. A charge names its matching set by key:
-- (subscription id, '#own') when it is for a subscriptions row, else (contact id, currency) with
-- the amount within tolerance (it is a candidate).
disconnects as (
    select * from unnest(%(d_pid)s::uuid[], %(d_contact)s::uuid[], %(d_cur)s::text[],
                         %(d_amount)s::numeric[], %(d_canceled)s::timestamptz[])
             as d(pid, contact_id, cur, amount, canceled_at)
),
stage1 as materialized (
    select t.id, t.contact_id, t.subscription_id, t.amount, t.transaction_date, t.status, t.source, t.currency,
           c.id is null as orphaned
    from public.transactions t
    left join public.contacts c on c.id = t.contact_id
    left join (select contact_id, end_time from subs where ended) by_contact
           on by_contact.contact_id = t.contact_id and t.transaction_date > by_contact.end_time
    left join (select id, end_time from subs where ended) by_link
           on by_link.id = t.subscription_id and t.transaction_date > by_link.end_time
    where c.id is null
       or by_contact.contact_id is not null
       or by_link.id is not null
       -- (a disconnect's candidate charges are after its ended Kajabi match: by_contact has them)
       or t.subscription_id = any(%(d_pid)s::uuid[])
),
interesting as materialized (
    select distinct on (s1.id) s1.*, upper(btrim(s1.currency, E' \t\r\n') collate "C") as cur,
           (select own.id from public.subscriptions own where own.id = s1.subscription_id) as own_id
    from stage1 s1                     -- few rows: a primary-key look-up each, not a hash of the table
    order by s1.id
),
charges as (
    select i.*, coalesce(i.own_id, i.contact_id) as k_id,
           case when i.own_id is null then i.cur else '#own' end as k_tag
    from interesting i
    where lower(btrim(i.status, E' \t\r\n') collate "C") = 'completed'
),
set_members as materialized (
    select s.id as sid, s.id as k_id, '#own' as k_tag, false as by_amount, s.*
    from subs s where s.id in (select own_id from charges)
    union all
    select s.id, s.contact_id, s.cur, true, s.*
    from subs s where s.contact_id in (select contact_id from charges)
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
