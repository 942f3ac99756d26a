-- Cache.fill: stores what a reader read after a miss, only if the reservation
-- of that miss still stands (no delete, set or other fill since), in one step.
-- KEYS[1]  the entry (`<ns>:cache:<key>`), as in cache-lookup.lua
-- ARGV[1]  the ticket cache-lookup.lua returned with the miss
-- ARGV[2]  the value
-- ARGV[3]  the value's TTL in milliseconds
-- Returns  1 when stored; 0 when the reservation is gone or another one
--          (the key was deleted, set, filled or lapsed): nothing changes.
if redis.call('GET', KEYS[1]) ~= 'r' .. ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], 'v' .. ARGV[2], 'PX', ARGV[3])
return 1
