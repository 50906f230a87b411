-- uses: subs
-- A sample of the PayPal ids (PayPal's form) that live subscription rows hold: `billing-monitor doctor` asks PayPal
-- whether this REST app can see them (a 404: the subscription was created through another app).
select distinct s.paypal_id, md5(s.paypal_id) as spread
from subs s
where (s.raw_paypal_id is not null or s.raw_kajabi_id like '%%I-%%')
  and not s.ended and s.paypal_id collate "C" ~ '^I-[A-Z0-9]+$'
order by spread
limit %(n)s
