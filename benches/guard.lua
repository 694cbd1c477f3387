-- Variant 3 of benches/run.sh: what people hand-write instead of webhook-guard.
-- Checks the `sig` query parameter against a constant, buffers the whole body and looks
-- for the four required fields with a plain substring search. No JSON parsing, no
-- pair/ID/time validation, no normalisation: it does far less than webhook-guard.
local SECRET = "bench-secret"
local FIELDS = { '"eventType"', '"applicationId"', '"eventTime"', '"provisioningState"' }

function envoy_on_request(handle)
  local path = handle:headers():get(":path") or ""
  local sig = string.match(path, "[?&]sig=([^&]*)")
  if sig == nil or sig == "" then
    handle:respond({ [":status"] = "401" }, "missing sig")
    return
  end
  if sig ~= SECRET then
    handle:respond({ [":status"] = "403" }, "bad sig")
    return
  end
  local body = handle:body()
  if body == nil then
    handle:respond({ [":status"] = "400" }, "empty body")
    return
  end
  local text = body:getBytes(0, body:length())
  for _, field in ipairs(FIELDS) do
    if not string.find(text, field, 1, true) then
      handle:respond({ [":status"] = "400" }, "missing " .. field)
      return
    end
  end
end
