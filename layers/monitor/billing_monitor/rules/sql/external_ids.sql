-- uses:
-- The external_id (trimmed, null when blank) of the transactions %(ids)s: the charges the findings list.
select t.id, nullif(btrim(t.external_id, E' \t\r\n'), '') as external_id
from {source}.transactions t
where t.id = any(%(ids)s::uuid[])
