-- RateLimiter.take: a token bucket, refilled evenly, in one step.
-- KEYS[1]  the bucket (`<ns>:rate:<key>`), a hash: tokens, at (ms, Redis' clock)
-- ARGV[1]  the bucket's size: the limit's count
-- ARGV[2]  the limit's window in milliseconds: `count` tokens come back per window
-- ARGV[3]  cost: 1 takes a token, -1 gives one back (never above full)
-- Returns  {allowed (1 or 0), ms until a token is there when refused (else 0)}.
--          A refused take changes nothing. The key lapses after a window
--          untouched: by then the bucket is full again, as if it were new.
-- Time is the server's (TIME), the same for every gateway.
local count = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = count
if state[1] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  tokens = math.min(count, tonumber(state[1]) + elapsed * count / window)
end
if cost > 0 and tokens < cost then
  return {0, math.ceil((cost - tokens) * window / count)}
end
tokens = math.min(count, tokens - cost)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
