-- xferwatch: one internal host's share of the fleet's detection state, updated atomically.
-- Every key of a call belongs to one host (same hash tag, so the same cluster slot).
--
-- KEYS[i]: the key of op i.
-- ARGV[1]: "bl_window_us bl_learning bl_k bl_floor hr_window_us rollup_window_us"
-- ARGV[1+i]: op i, "kind now_us delta threshold flags"
--   kind H: host roll-up (1173006), sliding window of 60 buckets, alert once per window
--   kind P: host-pair roll-up (1173005), the same over one external host and protocol
--   kind B: baseline (1173004), per-window volume in a ring of 256 windows
--   flags: 1 = the alert was already raised locally (Redis was down): record it, report nothing
--          2 = P only: the session crossed on its own (1173001), the roll-up does not repeat it
-- Returns, per op: {alert (0/1), total, limit, mean}.

local cfg = {}
for v in string.gmatch(ARGV[1], '%S+') do cfg[#cfg + 1] = tonumber(v) end
local blw, learn, k, floor, hrw, prw = cfg[1], cfg[2], cfg[3], cfg[4], cfg[5], cfg[6]
local BUCKETS, RING, ALPHA = 60, 256, 0.1

local function I(x) return string.format('%d', x) end

-- A sliding window of BUCKETS buckets: fields b<index> hold bytes, s their sum, lo the oldest
-- bucket held, la the time of the last alert. The buckets are read again only when the oldest
-- may have left the window (or an update lands before it).
local function slide(key, now, delta, window, threshold, flags)
  local blen = math.max(1, math.floor(window / BUCKETS))
  local b = math.floor(now / blen)
  if delta > 0 then redis.call('HINCRBY', key, 'b' .. I(b), I(delta)) end
  local lo = tonumber(redis.call('HGET', key, 'lo'))
  local sum
  if lo ~= nil and b >= lo and (lo + 1) * blen > now - window then
    sum = tonumber(redis.call('HINCRBY', key, 's', I(delta)))
  else
    local all = redis.call('HGETALL', key)
    sum, lo = 0, b
    for i = 1, #all, 2 do
      local f, v = all[i], all[i + 1]
      if string.sub(f, 1, 1) == 'b' then
        local j = tonumber(string.sub(f, 2))
        if j and (j + 1) * blen > now - window then
          sum = sum + tonumber(v)
          if j < lo then lo = j end
        else
          redis.call('HDEL', key, f)
        end
      end
    end
    redis.call('HSET', key, 's', I(sum), 'lo', I(lo))
  end
  local la = tonumber(redis.call('HGET', key, 'la'))
  local quiet = (la == nil) or (now - la >= window)
  local alert = 0
  if flags % 4 >= 2 then
    redis.call('HSET', key, 'la', I(now))
  elseif flags % 2 == 1 then
    if quiet then redis.call('HSET', key, 'la', I(now)) end
  elseif threshold > 0 and quiet and sum >= threshold then
    redis.call('HSET', key, 'la', I(now))
    alert = 1
  end
  redis.call('PEXPIRE', key, I(math.ceil(2 * window / 1000) + 60000))
  return {alert, sum, threshold, ''}
end

local function baseline(key, now, delta, flags)
  local w = math.floor(now / blw)
  local last = tonumber(redis.call('HGET', key, 'last'))
  if last ~= nil and w <= last - RING then
    -- Older than every window the ring holds.
    return {0, 0, 0, ''}
  end
  if last == nil or w > last then redis.call('HSET', key, 'last', I(w)) end
  local s = I(w % RING)
  local si = tonumber(redis.call('HGET', key, 'i' .. s))
  if si ~= w then
    redis.call('HSET', key, 'i' .. s, I(w), 'b' .. s, '0', 'a' .. s, '0')
  end
  local cur = redis.call('HINCRBY', key, 'b' .. s, I(delta))
  local first = tonumber(redis.call('HGET', key, 'first'))
  -- The learnt mean folds windows up to mw; an update into one of them (a late sensor), or an
  -- earlier first window, makes it stale.
  local mw = tonumber(redis.call('HGET', key, 'mw'))
  if first == nil or w < first then
    first = w
    redis.call('HSET', key, 'first', I(w))
    mw = -1
  end
  if mw ~= nil and w <= mw then
    redis.call('HDEL', key, 'm', 'd', 'mw')
    mw = nil
  end
  redis.call('PEXPIRE', key, I(math.ceil(blw / 1000) * (RING + 2)))
  if flags % 2 == 1 then
    redis.call('HSET', key, 'a' .. s, '1')
    return {0, cur, 0, ''}
  end
  if w - first < learn then return {0, cur, 0, ''} end
  local function vol(j)
    local t = I(j % RING)
    if tonumber(redis.call('HGET', key, 'i' .. t)) == j then
      return tonumber(redis.call('HGET', key, 'b' .. t)) or 0
    end
    return 0
  end
  local start = math.max(first, w - RING + 1)
  local mean, dev, from
  if mw ~= nil and mw >= start and mw <= w - 1 then
    mean = tonumber(redis.call('HGET', key, 'm'))
    dev = tonumber(redis.call('HGET', key, 'd'))
    from = mw + 1
  end
  if mean == nil or dev == nil then
    mean, dev, from = vol(start), 0, start + 1
  end
  for j = from, w - 1 do
    local v = vol(j)
    local d = math.abs(v - mean)
    mean = mean + ALPHA * (v - mean)
    dev = dev + ALPHA * (d - dev)
  end
  if from <= w - 1 or mw ~= w - 1 then
    redis.call('HSET', key, 'm', string.format('%.17g', mean), 'd', string.format('%.17g', dev),
      'mw', I(w - 1))
  end
  local limit = math.max(k * mean, floor)
  local alert = 0
  if cur > limit and redis.call('HGET', key, 'a' .. s) ~= '1' then
    redis.call('HSET', key, 'a' .. s, '1')
    alert = 1
  end
  return {alert, cur, math.ceil(limit), string.format('%.17g', mean)}
end

local out = {}
for i = 1, #KEYS do
  local kind, now, delta, threshold, flags =
    string.match(ARGV[i + 1], '^(%a) (%-?%d+) (%d+) (%d+) (%d+)$')
  now, delta, threshold, flags = tonumber(now), tonumber(delta), tonumber(threshold), tonumber(flags)
  if kind == 'H' then
    out[i] = slide(KEYS[i], now, delta, hrw, threshold, flags)
  elseif kind == 'P' then
    out[i] = slide(KEYS[i], now, delta, prw, threshold, flags)
  elseif kind == 'B' then
    out[i] = baseline(KEYS[i], now, delta, flags)
  else
    out[i] = {0, 0, 0, 'bad op'}
  end
end
return out
