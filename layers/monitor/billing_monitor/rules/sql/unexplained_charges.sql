-- uses: subs
-- Check 4 (post_cancellation_charge): charges whose matching set is not empty, holds nothing live,
-- and ended before the charge. "Nothing in the set covers the charge" is one hash anti-join:
-- a live subscription, or one ending at or after the charge, covers it.
set_members as materialized (
    select id as sid, id as k_id, '#own' as k_tag, amount, ended, end_time, false as by_amount from subs
    union all
    select id, contact_id, cur, amount, ended, end_time, true from subs where contact_id is not null
),
charges as (
    select t.id, t.contact_id, t.amount, upper(btrim(t.currency, E' \t\r\n')) as cur, t.transaction_date,
           coalesce(own.id, t.contact_id) as k_id,
           case when own.id is null then upper(btrim(t.currency, E' \t\r\n')) else '#own' end as k_tag
    from public.transactions t
    left join public.subscriptions own on own.id = t.subscription_id
    where lower(btrim(t.status, E' \t\r\n')) = 'completed'
),
unexplained as (
    select ch.*
    from charges ch
    where exists (
              select 1 from set_members m
              where m.k_id = ch.k_id and m.k_tag = ch.k_tag
                and (not m.by_amount or abs(m.amount - ch.amount) <= %(tol)s))
      and not exists (
              select 1 from set_members m
              where m.k_id = ch.k_id and m.k_tag = ch.k_tag
                and (not m.by_amount or abs(m.amount - ch.amount) <= %(tol)s)
                and (not m.ended or m.end_time >= ch.transaction_date))
)
select distinct on (u.id)
       u.id as transaction_id, u.contact_id, u.amount, u.cur, u.transaction_date,
       s.id as subscription_id, s.paypal_id, s.kajabi_id_text,
       s.amount as subscription_amount, s.cur as subscription_cur, s.cycle as subscription_cycle
from unexplained u
join set_members m on m.k_id = u.k_id and m.k_tag = u.k_tag
                  and (not m.by_amount or abs(m.amount - u.amount) <= %(tol)s)
join subs s on s.id = m.sid
order by u.id, m.end_time desc, m.sid
