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
--   judged. A lost probe, any verdict that is not a failure (a 429, a success), and the breaker
--   closing end the run (null). A closed breaker has none.
-- - An endpoint is disabled only when its run of failed probes is older than
--   `breaker.disable_after`: every probe judged in that window failed, and none was lost.

alter table herald.destinations add column probes_failing_since timestamptz;

-- Breakers open at upgrade keep the count they had: from the moment they opened.
update herald.destinations set probes_failing_since = breaker_opened_at
where breaker <> 'closed';

alter table herald.destinations add constraint destinations_closed_has_no_failing_probes
    check (breaker <> 'closed' or probes_failing_since is null);
