-- wrk script for the serving-modes benchmark (bench/modes.py): like request.lua, but every
-- request carries a different user_id, so assignment tracking builds, dedups and uploads a new
-- event per request instead of measuring the dedup-hit path. The user JSON is split by
-- bench/modes.py into a prefix and a suffix around a 12-character id; both parts are
-- 3-byte aligned, so the base64 of the whole is base64(prefix) .. base64(id) .. base64(suffix)
-- and only the 12 bytes are encoded per request.
--   BENCH_METHOD        GET or POST
--   BENCH_PATH          request path
--   BENCH_HEADERS       extra headers, one "Name: value" per line
--   BENCH_USER_PREFIX / BENCH_USER_SUFFIX        raw JSON around the id (POST body)
--   BENCH_USER_PREFIX_B64 / BENCH_USER_SUFFIX_B64 the same in base64 (GET X-Amp-Exp-User)
--   BENCH_NONCE         2 characters that make ids unique per measured cell
--   BENCH_POOL          0 (default): a new id per request; N > 0: ids drawn from a pool of N
--                       users shared by all wrk threads (each thread walks the pool from its
--                       own offset with a stride coprime to N), so once a run has sent N
--                       requests nearly every assignment repeats one seen before: the
--                       dedup-hit path
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local nonce = os.getenv("BENCH_NONCE") or "aa"
local pool = tonumber(os.getenv("BENCH_POOL") or "0") or 0
local prefix, suffix = os.getenv("BENCH_USER_PREFIX"), os.getenv("BENCH_USER_SUFFIX")
local prefix64, suffix64 = os.getenv("BENCH_USER_PREFIX_B64"), os.getenv("BENCH_USER_SUFFIX_B64")

local base_headers = {}
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then base_headers[name] = value end
end

local threads, next_tid = {}, 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s) -- #s is a multiple of 3
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + b * 256 + c
    for shift = 18, 0, -6 do
      local k = math.floor(n / 2 ^ shift) % 64
      out[#out + 1] = alphabet:sub(k + 1, k + 1)
    end
  end
  return table.concat(out)
end

local counter = 0
-- 7919 is prime, so for any pool size that it does not divide the walk visits every user.
local stride = 7919
local function next_id()
  counter = counter + 1
  if pool > 0 then
    local index = (tid * 104729 + counter * stride) % pool
    return string.format("%s%010d", nonce, index)
  end
  return string.format("%s%02d%08d", nonce, tid % 100, counter % 100000000)
end

function request()
  local id = next_id()
  if method == "POST" then
    return wrk.format(method, path, base_headers, prefix .. id .. suffix)
  end
  local headers = {}
  for k, v in pairs(base_headers) do headers[k] = v end
  headers["X-Amp-Exp-User"] = prefix64 .. b64(id) .. suffix64
  return wrk.format(method, path, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d," ..
    "\"p50_us\":%d,\"p99_us\":%d,\"p999_us\":%d,\"max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
