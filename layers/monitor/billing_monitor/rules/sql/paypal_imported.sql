-- uses:
-- Which of the PayPal transaction ids %(ids)s some transactions row holds as its external_id (trimmed).
select distinct btrim(t.external_id, E' \t\r\n') as external_id
from {source}.transactions t
where btrim(t.external_id, E' \t\r\n') = any(%(ids)s::text[])
