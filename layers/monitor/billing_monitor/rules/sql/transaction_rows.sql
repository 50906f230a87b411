-- uses: subs, live_paypal
-- One pass over transactions for orphaned_transaction (check 5) and the charges after
-- cancellation of each billing_disconnect (check 1). A charge names its subscription by key:
-- (subscription id, '#own') when it is for a subscriptions row, else (contact id, currency),
-- whose amount must then be within tolerance (it is a candidate).
disconnect_keys as (
    select subscription_id as pid, subscription_id as k_id, '#own' as k_tag, amount,
           kajabi_canceled_at as canceled_at, false as by_amount
    from live_paypal where check_name = 'billing_disconnect'
    union all
    select subscription_id, contact_id, cur, amount, kajabi_canceled_at, true
    from live_paypal where check_name = 'billing_disconnect' and contact_id is not null
)
select t.id as transaction_id, t.contact_id, t.subscription_id, t.amount,
       upper(btrim(t.currency, E' \t\r\n')) as cur, t.transaction_date,
       c.id is null as orphaned,
       d.pid as disconnect_subscription_id
from public.transactions t
left join public.contacts c on c.id = t.contact_id
left join public.subscriptions own on own.id = t.subscription_id
left join disconnect_keys d
       on d.k_id = coalesce(own.id, t.contact_id)
      and d.k_tag = case when own.id is null then upper(btrim(t.currency, E' \t\r\n')) else '#own' end
      and (not d.by_amount or abs(t.amount - d.amount) <= %(tol)s)
      and t.transaction_date > d.canceled_at
      and lower(btrim(t.status, E' \t\r\n')) = 'completed'
      and lower(btrim(t.source, E' \t\r\n')) = 'paypal'
where c.id is null or d.pid is not null
