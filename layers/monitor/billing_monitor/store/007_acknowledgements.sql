-- Findings the owner acknowledged (issue 20): "known, leave it". One row per finding; an acknowledgement ends
-- by itself when the finding changes (its fingerprint, store/acks.py) or when `until` passes, and is then
-- never revived: lapsed_at records when a saved scan found it changed. `billing-monitor unack` deletes it.
-- (The runner applies each shipped number not applied yet, in order.)
create table billing_monitor.acknowledgements (
    finding_id     text primary key,
    acked_by       text not null,                 -- "slack:U012AB3CDE" or what --by named
    acked_at       timestamptz not null,
    note           text,
    until          timestamptz,                   -- null: until the finding changes
    fingerprint    text not null,                 -- the finding as acknowledged (acks.ack_fingerprint)
    lapsed_at      timestamptz,                   -- when a saved scan found it changed
    lapsed_reason  text
);
