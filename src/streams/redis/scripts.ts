/**
 * The Lua scripts of the Redis buffer store; those of the fleet (the peers' leases and aborts, the
 * run queue) are in fleet/scripts.ts. Every script starts with the one PRELUDE below. Each runs atomically, so the
 * limits and the write-once final chunk hold whichever instance runs them.
 *
 * Keys, under the prefix P (ARGV[1] of every script; one Redis, not Redis Cluster):
 * - P..'l:'..id  the stream's chunks: a Redis Stream, entry id `seq-1`, fields c (the chunk as
 *                JSON) and b (bytes appended up to and including this chunk); TTL refreshed on poll
 * - P..'m:'..id  its state (hash): req, owner, acked, last, ended, appended, acked_bytes, abort
 * - P..'r:'..key the live streams started by one request id (set)
 * - P..'live'    every live buffer, scored by when it expires (sorted set): the count the
 *                buffer limit checks, and what the sweep reads
 * - P..'leases'  streams being generated, scored by when their owner's lease runs out
 * - P..'sizes'   bytes buffered per live stream (hash)
 * - P..'gone:'..id  why a buffer is no more: expired or released (tombstone with a TTL)
 * - P..'ctl:'..instance  the pub/sub channel on which an instance hears abort requests
 */
import { Script } from './link.js';

/** The helpers every script shares: the leases (`renew`, `expired`), the buffers', the fleet queue's. */
const PRELUDE = `
local P = ARGV[1]
local Q = P .. 'fq:'

-- Redis's clock, in ms. Leases are given by it when a script runs, so a renewal sent before a stall
-- and run after it still gives a full lease; they are judged by the earlier of it and the time the
-- check was sent, so a check sent before a stall judges nothing that ran out during it.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The lease primitive (see leases.ts): a lease is a member of the sorted set "set", scored by when it runs out.
-- Renews the leases ARGV[from..] until "until_" where "status(id)" says 'ok' or 'abort'; returns each status.
local function renew(set, until_, from, status)
  local out = {}
  for i = from, #ARGV do
    local s = status(ARGV[i])
    if s == 'ok' or s == 'abort' then redis.call('ZADD', set, until_, ARGV[i]) end
    out[#out + 1] = s
  end
  return out
end
-- Takes out of "set" and returns up to "limit" (-1: all) leases that ran out by "now".
local function expired(set, now, limit)
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, tonumber(limit))
  for _, id in ipairs(ids) do redis.call('ZREM', set, id) end
  return ids
end

-- Buffers
local function meta(id) return P .. 'm:' .. id end
local function log(id) return P .. 'l:' .. id end
local function drop(id, why, tombstone_ms)
  local req = redis.call('HGET', meta(id), 'req')
  if req and req ~= '' then redis.call('SREM', P .. 'r:' .. req, id) end
  redis.call('DEL', meta(id), log(id))
  redis.call('ZREM', P .. 'live', id)
  redis.call('ZREM', P .. 'leases', id)
  redis.call('HDEL', P .. 'sizes', id)
  redis.call('SET', P .. 'gone:' .. id, why, 'PX', tombstone_ms)
end
-- Appends one chunk; returns the bytes now buffered.
local function add(id, seq, json, bytes, is_end, ttl_ms)
  local m = meta(id)
  local state = redis.call('HMGET', m, 'appended', 'acked_bytes')
  local appended = tonumber(state[1]) + bytes
  redis.call('XADD', log(id), seq .. '-1', 'c', json, 'b', appended)
  redis.call('HSET', m, 'last', seq, 'appended', appended)
  if is_end then
    redis.call('HSET', m, 'ended', 1)
    redis.call('ZREM', P .. 'leases', id)
  end
  local size = appended - tonumber(state[2])
  redis.call('HSET', P .. 'sizes', id, size)
  redis.call('PEXPIRE', log(id), ttl_ms)
  return size
end

-- The fleet's run queue (keys: see fleet/scripts.ts)
local function job(id) return Q .. 'j:' .. id end
local function hdecr(key, field)
  if redis.call('HINCRBY', key, field, -1) <= 0 then redis.call('HDEL', key, field) end
end
-- A run leaves the fleet's counts: it is done, and its data expires.
local function finish(id, ttl)
  local client = redis.call('HGET', job(id), 'client')
  redis.call('HSET', job(id), 'state', 'done')
  redis.call('ZREM', Q .. 'claims', id)
  if client then hdecr(Q .. 'ns', client) end
  redis.call('PEXPIRE', job(id), ttl)
  redis.call('PEXPIRE', Q .. 'ch:' .. id, ttl)
end
-- Puts a run (back) in its class's queue.
local function enqueue(id, cls, turn, client)
  redis.call('ZADD', Q .. 'q:' .. cls, turn, id)
  redis.call('SADD', Q .. 'classes', cls)
  redis.call('INCR', Q .. 'queued')
  redis.call('HINCRBY', Q .. 'nq', client, 1)
  redis.call('PUBLISH', Q .. 'wake', cls)
end
local function unqueue(id, cls, client)
  redis.call('ZREM', Q .. 'q:' .. cls, id)
  if redis.call('ZCARD', Q .. 'q:' .. cls) == 0 then redis.call('SREM', Q .. 'classes', cls) end
  redis.call('DECR', Q .. 'queued')
  hdecr(Q .. 'nq', client)
end
local function free_slots(now)
  local total = 0
  for _, inst in ipairs(redis.call('ZRANGEBYSCORE', Q .. 'alive', now, '+inf')) do
    total = total + tonumber(redis.call('HGET', Q .. 'free', inst) or '0')
  end
  return total
end
-- An instance leaves the fleet: it is no longer counted, nor shown.
local function leave(inst)
  redis.call('ZREM', Q .. 'alive', inst)
  redis.call('HDEL', Q .. 'free', inst)
  redis.call('HDEL', Q .. 'info', inst)
end
`;

/** A script of the store or the fleet: the PRELUDE, then `body`. */
export function script(body: string): Script {
  return new Script(PRELUDE + body);
}

/** ARGV: P, id, max_buffers, expires_at, request_key, owner ('' for none), lease_ms. Returns ok, exists or full. */
export const CREATE = script(`
local id = ARGV[2]
if redis.call('EXISTS', meta(id)) == 1 then return 'exists' end
if redis.call('ZCARD', P .. 'live') >= tonumber(ARGV[3]) then return 'full' end
redis.call('HSET', meta(id), 'req', ARGV[5], 'owner', ARGV[6], 'acked', -1, 'last', -1, 'ended', 0, 'appended', 0, 'acked_bytes', 0)
redis.call('ZADD', P .. 'live', ARGV[4], id)
redis.call('HSET', P .. 'sizes', id, 0)
if ARGV[5] ~= '' then redis.call('SADD', P .. 'r:' .. ARGV[5], id) end
if ARGV[6] ~= '' then redis.call('ZADD', P .. 'leases', clock() + tonumber(ARGV[7]), id) end
redis.call('DEL', P .. 'gone:' .. id)
return 'ok'
`);

/**
 * ARGV: P, id, seq, chunk JSON, end (1/0), bytes, ttl_ms. Returns {status, bytes buffered}:
 * status 1 stored, 0 already stored (a retried append), -1 the buffer is gone (expired, released) or has ended,
 * -2 it is gone without a trace (Redis lost its data).
 */
export const APPEND = script(`
local id = ARGV[2]
local state = redis.call('HMGET', meta(id), 'last', 'ended', 'appended', 'acked_bytes')
if not state[1] then return {redis.call('EXISTS', P .. 'gone:' .. id) == 1 and -1 or -2, 0} end
local seq = tonumber(ARGV[3])
if seq <= tonumber(state[1]) then return {0, tonumber(state[3]) - tonumber(state[4])} end
if state[2] == '1' then return {-1, 0} end
return {1, add(id, seq, ARGV[4], tonumber(ARGV[6]), ARGV[5] == '1', ARGV[7])}
`);

/**
 * ARGV: P, id, mode, after_seq, expires_at, ttl_ms, tombstone_ms. Modes: ack (return what follows
 * the acknowledged cursor, acknowledge it all), after (acknowledge up to after_seq, return what
 * follows), peek (return what follows the cursor, change nothing), state.
 * Returns {'ok', chunks}, {'state', acked, last, ended}, {'gone', reason}, {'beyond', last} or {'before', acked}.
 */
export const READ = script(`
local id = ARGV[2]
local m = meta(id)
local s = redis.call('HMGET', m, 'acked', 'last', 'ended', 'appended', 'acked_bytes')
if not s[1] then return {'gone', redis.call('GET', P .. 'gone:' .. id) or 'unknown'} end
local acked, last, mode = tonumber(s[1]), tonumber(s[2]), ARGV[3]
if mode == 'state' then return {'state', acked, last, tonumber(s[3])} end
local from, to = acked, last
if mode == 'after' then
  local after = tonumber(ARGV[4])
  if after > last then return {'beyond', last} end
  if after < acked then return {'before', acked} end
  from, to = after, after
end
local start = '-'
if from >= 0 then start = '(' .. from .. '-1' end
local chunks = {}
for i, entry in ipairs(redis.call('XRANGE', log(id), start, '+')) do chunks[i] = entry[2][2] end
if mode == 'peek' then return {'ok', chunks} end
if to > acked then
  local through = redis.call('XREVRANGE', log(id), to .. '-1', '-', 'COUNT', 1)
  local acked_bytes = tonumber(s[5])
  if through[1] then acked_bytes = tonumber(through[1][2][4]) end
  redis.call('XTRIM', log(id), 'MINID', (to + 1) .. '-0')
  redis.call('HSET', m, 'acked', to, 'acked_bytes', acked_bytes)
  redis.call('HSET', P .. 'sizes', id, tonumber(s[4]) - acked_bytes)
  if s[3] == '1' and to >= last then
    drop(id, 'released', ARGV[7])
    return {'ok', chunks}
  end
end
redis.call('ZADD', P .. 'live', 'XX', ARGV[5], id)
redis.call('PEXPIRE', log(id), ARGV[6])
return {'ok', chunks}
`);

/** ARGV: P, id, expires_at, ttl_ms. Refreshes a live buffer's expiry. */
export const TOUCH = script(`
local id = ARGV[2]
if redis.call('ZSCORE', P .. 'live', id) then
  redis.call('ZADD', P .. 'live', ARGV[3], id)
  redis.call('PEXPIRE', log(id), ARGV[4])
end
return 1
`);

/** ARGV: P, now, tombstone_ms, limit. Drops up to `limit` expired buffers; returns their ids. */
export const SWEEP = script(`
local ids = redis.call('ZRANGEBYSCORE', P .. 'live', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do drop(id, 'expired', ARGV[3]) end
return ids
`);

/** ARGV: P, id, tombstone_ms. Releases a buffer. */
export const DELETE = script(`
if redis.call('EXISTS', meta(ARGV[2])) == 1 then drop(ARGV[2], 'released', ARGV[3]) end
return 1
`);

/** ARGV: P. Returns {live buffers, bytes buffered}. */
export const STATUS = script(`
local bytes = 0
for _, size in ipairs(redis.call('HVALS', P .. 'sizes')) do bytes = bytes + tonumber(size) end
return {redis.call('ZCARD', P .. 'live'), bytes}
`);
