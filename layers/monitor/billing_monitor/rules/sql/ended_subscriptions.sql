-- uses: subs
-- The ended subscriptions, as array literals for transaction_findings' stage 1 (one row; the text
-- goes back to the server as it came, so no array is built element by element in Python).
select coalesce(array_agg(s.id), '{}')::text         as ended_id,
       coalesce(array_agg(s.contact_id), '{}')::text as ended_contact,
       coalesce(array_agg(s.end_time), '{}')::text   as ended_at,
       min(s.end_time)                               as first_end
from subs s
where s.ended
