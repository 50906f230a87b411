-- uses:
-- The contacts named by the findings (a set, one query).
select id, email, nullif(btrim(concat_ws(' ', btrim(first_name), btrim(last_name))), '') as name
from public.contacts
where id = any(%(ids)s)
