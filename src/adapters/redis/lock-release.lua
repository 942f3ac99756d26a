-- Deletes a lease only if it is still ours.
-- KEYS[1]  the lease key (`<ns>:lock:<name>`)
-- ARGV[1]  our token
-- Returns  1 when deleted, 0 when it was no longer ours (nothing changed).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
