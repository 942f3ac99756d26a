-- Takes a lease if nobody holds it, with a fencing token, in one step.
-- KEYS[1]  the lease key (`<ns>:lock:<name>`), holds the holder's token
-- KEYS[2]  the fencing counter (`<ns>:lock:<name>:fence`), never expires
-- ARGV[1]  lease TTL in milliseconds
-- Returns  the new token (an integer, larger than every earlier one for this
--          name), or 0 when the lease is held by someone else.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
