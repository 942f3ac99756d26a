-- Takes a lease if nobody holds it, with a fencing token, in one step.
-- KEYS[1]  the lease key (`<ns>:lock:<name>`), holds the holder's token
-- KEYS[2]  the last token handed out (`<ns>:lock:<name>:fence`), never expires
-- ARGV[1]  lease TTL in milliseconds
-- Returns  the new token, or 0 when the lease is held by someone else. The
--          token is the master's clock in milliseconds, or one more than the
--          last token when that is larger: it grows with every acquisition.
-- Why the clock: replication is asynchronous, so a failover can lose the
-- lease and the last token. A bare counter would then give the next holder a
-- token an earlier holder already has, and a fence could not tell them
-- apart. The clock has moved on since (a failover takes seconds), so the
-- token is still the largest yet, unless the new master's clock is behind the
-- old one's by more than that. The same holds after every Redis restarted
-- empty.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0') + 1)
redis.call('SET', KEYS[2], string.format('%d', token))
redis.call('SET', KEYS[1], string.format('%d', token), 'PX', ARGV[1])
return token
