-- Extends a lease only if it is still ours.
-- KEYS[1]  the lease key (`<ns>:lock:<name>`)
-- ARGV[1]  our token
-- ARGV[2]  new TTL in milliseconds, from now
-- Returns  1 when extended, 0 when the lease lapsed or another holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
