-- Probe evidence: an endpoint is disabled for failed probes, never for lost ones.
--
-- `breaker.disable_after` used to count from the moment the breaker opened, and took due work
-- waiting as proof that the probes in between had failed. A probe whose daemon died, or whose
-- lease was rescued or released, ends without a verdict: the breaker reopens and probes again,
-- but nothing was learned about the endpoint. With daemons crashing while they probe (an
-- orchestrator's rolling restart, an out-of-memory loop) an endpoint that answered every probe
-- it received could stay open past `disable_after` and be disabled, its waiting notifications
-- ending dead.
--
-- Invariants:
-- - `probes_failing_since` is when the first of an unbroken run of failed probe verdicts was
--   judged, `probe_failed_at` when the latest was. A lost probe, any verdict that is not a
--   failure (a 429, a success), and the breaker opening or closing end the run (both null).
-- - An endpoint is disabled only when its run of failed probes spans `breaker.disable_after`,
--   from the first failed verdict to the latest: every probe judged in between failed, none
--   was lost, and the span is measured between verdicts, so time with no daemon running (no
--   probe sent) proves nothing.
-- - No constraint ties these columns to the breaker's state: the previous release, still
--   running during a rolling upgrade, closes breakers without knowing them. A stale value on
--   a closed breaker is harmless: only an open breaker is ever disabled, and opening clears it.
-- - Breakers open at upgrade start with no run: the evidence before it was not kept, so their
--   count starts at their next failed probe (a disable comes at most `disable_after` later).

alter table herald.destinations
    add column probes_failing_since timestamptz,
    add column probe_failed_at timestamptz;
