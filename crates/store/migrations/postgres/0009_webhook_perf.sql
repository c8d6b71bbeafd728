-- The dispatcher's hot path (docs/decisions/0007-webhook-outbox-and-leases.md): one partial index
-- over the pending deliveries, by endpoint in lease order. `due_webhook_endpoints` probes it once
-- per endpoint (an EXISTS, not a scan of every pending row) and `lease_deliveries` reads its first
-- rows in order, without sorting the backlog. Finished deliveries leave it, so it stays as small
-- as the backlog. It replaces the two indexes that served the old queries, which every state
-- change had to update as well.
CREATE INDEX webhook_deliveries_pending
    ON webhook_deliveries (endpoint_id, next_attempt_at, event_seq)
    WHERE state = 'pending';
DROP INDEX webhook_deliveries_due;
DROP INDEX webhook_deliveries_lease;
