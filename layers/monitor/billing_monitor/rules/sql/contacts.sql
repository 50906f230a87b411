-- uses:
-- The contacts named by the findings (a set, one query).
select id, email, first_name, last_name
from {source}.contacts
where id = any(%(ids)s::uuid[])
