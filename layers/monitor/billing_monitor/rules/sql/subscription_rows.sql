-- uses: subs
-- Checks 5 and 6 on subscriptions: orphaned_subscription (no such contact) and misfiled_paypal_id.
select s.id as subscription_id, s.contact_id, s.paypal_id, s.kajabi_id_text, s.amount, s.cur, s.cycle,
       c.id is null as orphaned, s.misfiled
from subs s
left join public.contacts c on c.id = s.contact_id
where c.id is null or s.misfiled
