-- uses:
-- Which of the PayPal ids %(ids)s some subscriptions row names, in either id column (trimmed).
select distinct v.id
from (select btrim(s.paypal_subscription_id, E' \t\r\n') as id from {source}.subscriptions s
      where s.paypal_subscription_id is not null
      union all
      select btrim(s.kajabi_subscription_id, E' \t\r\n') from {source}.subscriptions s
      where s.kajabi_subscription_id is not null) v
where v.id = any(%(ids)s::text[])
