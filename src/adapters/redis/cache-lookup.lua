-- Cache.lookup: reads an entry and, on a miss, reserves the key, in one step.
-- KEYS[1]  the entry (`<ns>:cache:<key>`): 'v' .. value, or 'r' .. ticket
--          while only reserved (a miss that a reader is filling)
-- ARGV[1]  a fresh random ticket, used if the key is free
-- ARGV[2]  the reservation's TTL in milliseconds
-- Returns  {1, value} on a hit; {0, ticket} on a miss: the standing
--          reservation's ticket, or ARGV[1] once the free key is reserved with it.
local entry = redis.call('GET', KEYS[1])
if entry then
  local kind = string.sub(entry, 1, 1)
  if kind == 'v' then return {1, string.sub(entry, 2)} end
  if kind == 'r' then return {0, string.sub(entry, 2)} end
end
redis.call('SET', KEYS[1], 'r' .. ARGV[1], 'PX', ARGV[2])
return {0, ARGV[1]}
