-- exp_sweep(mode, batch, total): deletes `total` expired finished rows in batches of `batch`, one
-- transaction per batch (COMMIT inside the procedure), as sweep.rs does (advisory xact lock first).
-- mode: 'cascade'  = current sweep.rs SQL (attempts go by ON DELETE CASCADE)
--       'explicit' = delete attempts of the victims explicitly in the same statement, then notifications
--       'log'      = variant b: victims found through herald.finished (append-only log), explicit attempts delete
create or replace procedure exp_sweep(mode text, batch int, total int, keep_secs float8 default 2592000) language plpgsql as $$
declare k int; done int := 0;
begin
  while done < total loop
    perform pg_try_advisory_xact_lock(7522);
    if mode = 'cascade' then
      with victims as (select n.id
        from herald.notifications n
        left join unnest(array[]::text[], array[]::float8[]) as rule(type, secs) on rule.type = lower(n.type)
        where n.finished_at is not null
          and n.finished_at < now() - make_interval(secs => keep_secs)
          and n.finished_at < now() - make_interval(secs => coalesce(rule.secs, keep_secs))
        order by n.finished_at limit batch for update of n skip locked)
      delete from herald.notifications n using victims where n.id = victims.id;
    elsif mode = 'explicit' then
      with victims as (select n.id
        from herald.notifications n
        left join unnest(array[]::text[], array[]::float8[]) as rule(type, secs) on rule.type = lower(n.type)
        where n.finished_at is not null
          and n.finished_at < now() - make_interval(secs => keep_secs)
          and n.finished_at < now() - make_interval(secs => coalesce(rule.secs, keep_secs))
        order by n.finished_at limit batch for update of n skip locked),
      gone_attempts as (delete from herald.attempts a using victims v where a.notification_id = v.id)
      delete from herald.notifications n using victims where n.id = victims.id;
    elsif mode = 'byid' then
      -- no index beyond the PK: UUIDv7 ids are time-ordered and finished_at >= created_at, so
      -- rows whose id is newer than the cutoff cannot be expired; walk the PK in id order.
      with victims as (select n.id
        from herald.notifications n
        left join unnest(array[]::text[], array[]::float8[]) as rule(type, secs) on rule.type = lower(n.type)
        where n.id < encode(substring(int8send((extract(epoch from now() - make_interval(secs => keep_secs)) * 1000)::int8) from 3)
                            || '\x00000000000000000000'::bytea, 'hex')::uuid
          and n.finished_at is not null
          and n.finished_at < now() - make_interval(secs => keep_secs)
          and n.finished_at < now() - make_interval(secs => coalesce(rule.secs, keep_secs))
        order by n.id limit batch for update of n skip locked),
      gone_attempts as (delete from herald.attempts a using victims v where a.notification_id = v.id)
      delete from herald.notifications n using victims where n.id = victims.id;
    else
      with candidates as (select f.ctid as fctid, f.id, f.finished_at from herald.finished f
        where f.finished_at < now() - make_interval(secs => keep_secs)
        order by f.finished_at limit batch),
      victims as (select n.id
        from candidates c join herald.notifications n on n.id = c.id
        left join unnest(array[]::text[], array[]::float8[]) as rule(type, secs) on rule.type = lower(n.type)
        where n.finished_at is not null
          and n.finished_at < now() - make_interval(secs => keep_secs)
          and n.finished_at < now() - make_interval(secs => coalesce(rule.secs, keep_secs))
        for update of n skip locked),
      gone_log as (delete from herald.finished f
        where f.ctid = any(array(select c.fctid from candidates c join victims v on v.id = c.id))),
      gone_attempts as (delete from herald.attempts a using victims v where a.notification_id = v.id)
      delete from herald.notifications n using victims where n.id = victims.id;
    end if;
    get diagnostics k = row_count;
    exit when k = 0;
    done := done + k;
    commit;
  end loop;
end $$;
