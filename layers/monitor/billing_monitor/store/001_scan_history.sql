-- billing-monitor's own state. Never in public: the production tables are read-only to the monitor.
create table billing_monitor.scan_runs (
    scan_id      uuid primary key,
    started_at   timestamptz not null,
    finished_at  timestamptz not null,
    tolerance    numeric not null,
    summary      jsonb not null,
    money_line   text not null,
    saved_at     timestamptz not null default now()
);

-- One row per problem ever seen (finding_id is stable across scans).
create table billing_monitor.findings (
    finding_id          text primary key,
    check_name          text not null,
    severity            text not null,
    paypal_subscription_id text,
    first_seen_scan     uuid not null references billing_monitor.scan_runs,
    first_seen_at       timestamptz not null,
    last_seen_scan      uuid not null references billing_monitor.scan_runs,
    last_seen_at        timestamptz not null,
    resolved_scan       uuid references billing_monitor.scan_runs,
    resolved_at         timestamptz,
    last_reported_at    timestamptz,       -- when Slack last carried it (new, changed, or reminder)
    fingerprint         text not null,     -- what changes when the finding does (severity, charges)
    finding             jsonb not null     -- the finding as the latest report has it
);
create index findings_open on billing_monitor.findings (check_name) where resolved_scan is null;

-- Which findings each scan saw.
create table billing_monitor.scan_findings (
    scan_id     uuid not null references billing_monitor.scan_runs on delete cascade,
    finding_id  text not null references billing_monitor.findings,
    severity    text not null,
    primary key (scan_id, finding_id)
);
