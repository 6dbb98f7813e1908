/**
 * The Lua scripts of the fleet: the peers' stream leases and aborts (keys: see redis/scripts.ts)
 * and the shared run queue. They run after the PRELUDE of redis/scripts.ts (its
 * helpers: the leases' `renew` and `expired`, `job`, `finish`, `enqueue`, `leave`). Each runs atomically in Redis, so admission,
 * limits, claims and fencing hold whichever instance runs them: there is no coordinator.
 *
 * Keys, under Q = prefix .. 'fq:' (ARGV[1] of every script is the prefix):
 * - Q..'j:'..id     a run (hash): cls, client, stream, origin, params, turn, state (queued, claimed,
 *                   done), attempt (claims so far), exec (the claiming instance), tokens (the
 *                   chunks of text it produced), retried (1 once re-queued), abort (1 when its receiver
 *                   asks), buf and bttl (a buffered run: its buffer's byte cap and the TTL of its
 *                   chunks; buf 0 for a run whose text goes to its receiver)
 * - Q..'q:'..cls    the runs waiting in one class (runs with the same needs), scored by turn; a
 *                   tie goes to the earlier run (ids are zero-padded enqueue counts, then a random part)
 * - Q..'classes'    the classes with waiting runs; Q..'need:'..cls what a class needs (JSON)
 * - Q..'claims'     claimed runs, scored by when their executor's lease runs out
 * - Q..'last'       each client's last turn; Q..'svc' the turn in service: the fair-queue rule of
 *                   streams/scheduler.ts (see there why it is written twice; shared test vectors)
 * - Q..'queued'     runs waiting; Q..'nq' waiting per client; Q..'ns' queued or running per client
 * - Q..'alive'      instances, scored by when their registration runs out; Q..'free' their free
 *                   slots; Q..'info' what they serve (JSON: engine, slots, models with their hash
 *                   and LoRA adapters)
 * - Q..'ch:'..id    what the executor of a run sends its receiver: a Redis Stream of entries e
 *                   (JSON: s start, a chunk of text, e end, lost); a buffered run's chunks go
 *                   straight into its stream's buffer (P..'l:'..stream) instead, once
 * - channels Q..'wake' (a run was queued) and Q..'ctl:'..instance (abort a run executing there)
 */
import { script } from '../redis/scripts.js';

/**
 * ARGV: P, now, cls, needs JSON, client, params JSON, origin, stream id, queue_limit,
 * client_queue_limit (0: none), max_streams (0: none), elsewhere (1: the receiver lacks the LoRA
 * adapter the run names), a random id part (ids never repeat, even after Redis lost its data), buf and
 * bttl (a buffered run: its buffer's byte cap and chunk TTL; 0 for another run). Checks that some live instance serving the run's model has its adapter
 * (with elsewhere), then the fleet-wide limits, and queues the run at its client's next turn.
 * Returns {'ok', id}, {'no_adapter'}, {'streams', count}, {'queue_full', running, queued} or
 * {'client_queue_full', queued by the client}.
 */
export const ENQUEUE = script(`
local now, cls, client = tonumber(ARGV[2]), ARGV[3], ARGV[5]
if ARGV[12] == '1' then
  local needs = cjson.decode(ARGV[4])
  local found = false
  for _, inst in ipairs(redis.call('ZRANGEBYSCORE', Q .. 'alive', now, '+inf')) do
    local ok, info = pcall(cjson.decode, redis.call('HGET', Q .. 'info', inst) or '{}')
    for _, model in ipairs(ok and type(info.models) == 'table' and info.models or {}) do
      if model.hash == needs.model and type(model.lora) == 'table' then
        for _, name in ipairs(model.lora) do
          if name == needs.lora then found = true end
        end
      end
    end
  end
  if not found then return {'no_adapter'} end
end
local max_streams = tonumber(ARGV[11])
local streams = tonumber(redis.call('HGET', Q .. 'ns', client) or '0')
if max_streams > 0 and streams >= max_streams then return {'streams', streams} end
local queued = tonumber(redis.call('GET', Q .. 'queued') or '0')
local free = free_slots(now)
if queued >= free then
  if queued - free >= tonumber(ARGV[9]) then return {'queue_full', redis.call('ZCARD', Q .. 'claims'), queued} end
  local mine = tonumber(redis.call('HGET', Q .. 'nq', client) or '0')
  local share = tonumber(ARGV[10])
  if share > 0 and mine >= share then return {'client_queue_full', mine} end
end
local svc = tonumber(redis.call('GET', Q .. 'svc') or '0')
local turn = math.max(tonumber(redis.call('HGET', Q .. 'last', client) or '0'), svc) + 1
redis.call('HSET', Q .. 'last', client, turn)
local id = string.format('%015d', redis.call('INCR', Q .. 'seq')) .. '-' .. ARGV[13]
redis.call('HSET', job(id), 'cls', cls, 'client', client, 'params', ARGV[6], 'origin', ARGV[7], 'stream', ARGV[8],
  'turn', turn, 'state', 'queued', 'attempt', 0, 'tokens', 0, 'retried', 0, 'buf', ARGV[14], 'bttl', ARGV[15], 'at', clock())
redis.call('SET', Q .. 'need:' .. cls, ARGV[4])
redis.call('HINCRBY', Q .. 'ns', client, 1)
enqueue(id, cls, turn, client)
return {'ok', id}
`);

/**
 * ARGV: P, now, lease_ms, instance, free slots before this claim, cls... (the classes it can
 * serve). Claims the waiting run with the lowest turn among them, the earlier on a tie, and
 * records this instance's free slots. Returns {} or {id, attempt, params, stream}.
 */
export const CLAIM = script(`
local instance, free = ARGV[4], tonumber(ARGV[5])
local best, best_turn, best_cls
for i = 6, #ARGV do
  local head = redis.call('ZRANGE', Q .. 'q:' .. ARGV[i], 0, 0, 'WITHSCORES')
  if head[1] then
    local turn = tonumber(head[2])
    if not best or turn < best_turn or (turn == best_turn and head[1] < best) then
      best, best_turn, best_cls = head[1], turn, ARGV[i]
    end
  end
end
if not best then
  redis.call('HSET', Q .. 'free', instance, free)
  return {}
end
local j = job(best)
local client = redis.call('HGET', j, 'client')
unqueue(best, best_cls, client)
local attempt = redis.call('HINCRBY', j, 'attempt', 1)
redis.call('HSET', j, 'state', 'claimed', 'exec', instance, 'sent', -1)
redis.call('ZADD', Q .. 'claims', clock() + tonumber(ARGV[3]), best)
redis.call('HSET', Q .. 'free', instance, free - 1)
local svc = math.max(tonumber(redis.call('GET', Q .. 'svc') or '0'), best_turn - 1)
redis.call('SET', Q .. 'svc', svc)
local last = redis.call('HGETALL', Q .. 'last')
for i = 1, #last, 2 do
  if tonumber(last[i + 1]) <= svc then redis.call('HDEL', Q .. 'last', last[i]) end
end
local s = redis.call('HMGET', j, 'params', 'stream')
return {best, attempt, s[1], s[2]}
`);

/**
 * ARGV: P, id, attempt, kind (s start, t a chunk of text, e end), entry JSON, ttl_ms, n (the
 * entry's number in this attempt, from 0), and for text: its seq and bytes. Sends one entry to the
 * run's receiver, if `attempt` still holds the claim (the fence: a run whose claim was taken back
 * never gets entries from its old executor), once: an entry sent again (its reply was lost) is not
 * added twice. A buffered run's text goes straight into its stream's buffer, where the receiver
 * reads it too. Returns 0 fenced, 1 sent, 2 sent and its receiver asks it to stop, 3 its buffer is
 * full (the chunk is kept), has ended or is gone: stop.
 */
export const EMIT = script(`
local id, kind, n = ARGV[2], ARGV[4], tonumber(ARGV[7])
local s = redis.call('HMGET', job(id), 'state', 'attempt', 'abort', 'sent', 'stream', 'buf', 'bttl')
if s[2] == ARGV[3] and n <= tonumber(s[4] or '-1') then return 1 end
if s[1] ~= 'claimed' or s[2] ~= ARGV[3] then return 0 end
redis.call('HSET', job(id), 'sent', n)
if kind == 't' then redis.call('HINCRBY', job(id), 'tokens', 1) end
if kind == 't' and tonumber(s[6] or '0') > 0 then
  if redis.call('HGET', meta(s[5]), 'ended') ~= '0' then return 3 end
  if add(s[5], tonumber(ARGV[8]), ARGV[5], tonumber(ARGV[9]), false, s[7]) >= tonumber(s[6]) then return 3 end
else
  redis.call('XADD', Q .. 'ch:' .. id, '*', 'e', ARGV[5])
end
if kind == 'e' then
  finish(id, ARGV[6])
  return 1
end
redis.call('PEXPIRE', Q .. 'ch:' .. id, ARGV[6])
if s[3] == '1' then return 2 end
return 1
`);

/**
 * ARGV: P, now, lease_ms, instance, free slots, info JSON, id... (the runs it executes).
 * Renews the instance's registration and its claims. Returns one status per id: ok, abort (its
 * receiver asks it to stop, or its receiver's buffered stream has ended: the receiver died) or lost (the claim is no longer its own).
 */
export const RENEW = script(`
local instance, until_ = ARGV[4], clock() + tonumber(ARGV[3])
redis.call('ZADD', Q .. 'alive', until_, instance)
redis.call('HSET', Q .. 'free', instance, ARGV[5])
redis.call('HSET', Q .. 'info', instance, ARGV[6])
return renew(Q .. 'claims', until_, 7, function(id)
  local s = redis.call('HMGET', job(id), 'state', 'exec', 'abort', 'stream', 'origin', 'at')
  if s[1] ~= 'claimed' or s[2] ~= instance then return 'lost' end
  if s[3] == '1' then return 'abort' end
  -- Its receiver left the fleet (it died, and an instance's REAP took its registration away): nobody reads the run,
  -- buffered or pushed live. A receiver is alive when it enqueues: missing within a lease of that, its registration
  -- was lost with Redis's data (FLUSHDB, a restart) and comes back at its next renewal.
  if s[5] and s[5] ~= '' and s[5] ~= instance and not redis.call('ZSCORE', Q .. 'alive', s[5])
    and clock() - tonumber(s[6] or '0') > tonumber(ARGV[3]) then return 'abort' end
  -- Its receiver's stream has ended (its receiver died: a lease check ended it) or was dropped: nobody reads the run.
  local ended = redis.call('HGET', meta(s[4]), 'ended')
  if ended == '1' or (not ended and redis.call('EXISTS', P .. 'gone:' .. s[4]) == 1) then return 'abort' end
  return 'ok'
end)
`);

/**
 * ARGV: P, now (when sent; the earlier of it and Redis's clock judges), ttl_ms, limit. Forgets instances whose registration ran out, and takes back the
 * claims whose lease ran out: a run that produced no text yet and was never retried goes back to
 * the front of its queue (its old turn) once; any other ends with a "lost" entry to its receiver.
 * Returns {requeued ids, ended ids}.
 */
export const REAP = script(`
local now = math.min(clock(), tonumber(ARGV[2]))
for _, inst in ipairs(expired(Q .. 'alive', now, -1)) do leave(inst) end
local requeued, ended = {}, {}
for _, id in ipairs(expired(Q .. 'claims', now, ARGV[4])) do
  local s = redis.call('HMGET', job(id), 'state', 'tokens', 'retried', 'cls', 'turn', 'client', 'exec', 'attempt')
  if s[1] == 'claimed' then
    if tonumber(s[2] or '0') == 0 and s[3] ~= '1' then
      redis.call('HSET', job(id), 'state', 'queued', 'retried', 1, 'exec', '')
      enqueue(id, s[4], tonumber(s[5]), s[6])
      requeued[#requeued + 1] = id
    else
      local entry = {t = 'lost', executor = s[7], tokens = tonumber(s[2]), attempts = tonumber(s[8])}
      redis.call('XADD', Q .. 'ch:' .. id, '*', 'e', cjson.encode(entry))
      finish(id, ARGV[3])
      ended[#ended + 1] = id
    end
  end
end
return {requeued, ended}
`);

/**
 * ARGV: P, id, ttl_ms, end entry JSON. The receiver stops a run: a waiting one leaves the queue at
 * once, with the end entry sent to its receiver (removed); a claimed one is flagged and its
 * executor told on its channel (asked); done: nothing to stop.
 */
export const CANCEL = script(`
local id = ARGV[2]
local s = redis.call('HMGET', job(id), 'state', 'cls', 'client', 'exec')
if s[1] == 'queued' then
  unqueue(id, s[2], s[3])
  redis.call('XADD', Q .. 'ch:' .. id, '*', 'e', ARGV[4])
  finish(id, ARGV[3])
  return 'removed'
end
if s[1] == 'claimed' then
  redis.call('HSET', job(id), 'abort', 1)
  redis.call('PUBLISH', Q .. 'ctl:' .. s[4], id)
  return 'asked'
end
return 'done'
`);

/** ARGV: P, instance. The instance stops claiming (a graceful shutdown): it is no longer counted as a free slot. */
export const LEAVE = script(`
leave(ARGV[2])
return 1
`);

/** ARGV: P, now. Returns {waiting runs, claimed runs, {instance, free, info JSON}...} for the live instances. */
export const STATUS = script(`
local out = {tonumber(redis.call('GET', Q .. 'queued') or '0'), redis.call('ZCARD', Q .. 'claims')}
for _, inst in ipairs(redis.call('ZRANGEBYSCORE', Q .. 'alive', ARGV[2], '+inf')) do
  out[#out + 1] = {inst, tonumber(redis.call('HGET', Q .. 'free', inst) or '0'), redis.call('HGET', Q .. 'info', inst) or '{}'}
end
return out
`);

/**
 * ARGV: P, lease_ms, id... (the streams this instance generates). Renews their leases (by Redis's clock).
 * Returns one status per id: ok, abort (asked to stop elsewhere), ended, gone, or lost (gone without a
 * trace: Redis lost its data; its next chunk reports it).
 */
export const HEARTBEAT = script(`
return renew(P .. 'leases', clock() + tonumber(ARGV[2]), 3, function(id)
  local s = redis.call('HMGET', meta(id), 'ended', 'abort')
  if not s[1] and redis.call('EXISTS', P .. 'gone:' .. id) == 0 then return 'lost' end
  if not s[1] then return 'gone' end
  if s[1] == '1' then return 'ended' end
  if s[2] == '1' then return 'abort' end
  return 'ok'
end)
`);

/**
 * ARGV: P, now (when sent; the earlier of it and Redis's clock judges), final chunk template (JSON), bytes of a final chunk, ttl_ms, limit. Ends each
 * stream whose lease ran out with the template as its final chunk (numbered after the last one,
 * its error naming the owner); returns their ids. A stream is ended once only, whoever runs this.
 */
export const EXPIRE_LEASES = script(`
local ended = {}
for _, id in ipairs(expired(P .. 'leases', math.min(clock(), tonumber(ARGV[2])), ARGV[6])) do
  local s = redis.call('HMGET', meta(id), 'last', 'ended', 'owner')
  if s[1] and s[2] ~= '1' then
    local chunk = cjson.decode(ARGV[3])
    chunk.seq = tonumber(s[1]) + 1
    chunk.error.data = {stream_id = id, owner = s[3], last_seq = tonumber(s[1])}
    add(id, chunk.seq, cjson.encode(chunk), tonumber(ARGV[4]), true, ARGV[5])
    ended[#ended + 1] = id
  end
end
return ended
`);

/**
 * ARGV: P, id. Asks the owner of a live stream to abort it: sets the abort flag (which its
 * heartbeat reads) and tells it at once on its channel. Returns {'gone', reason}, {'none'} (it
 * has ended, or no instance generates it) or {'asked', listeners}.
 */
export const ABORT = script(`
local id = ARGV[2]
local s = redis.call('HMGET', meta(id), 'ended', 'owner')
if not s[1] then return {'gone', redis.call('GET', P .. 'gone:' .. id) or 'unknown'} end
if s[1] == '1' or s[2] == '' then return {'none'} end
redis.call('HSET', meta(id), 'abort', 1)
return {'asked', redis.call('PUBLISH', P .. 'ctl:' .. s[2], id)}
`);
