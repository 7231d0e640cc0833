-- wrk script: POSTs TeleCMI-shaped live events and CDRs, each with its own conversation id,
-- so the bridge does the full per-request work (new event id, key, partition).
-- wrk -t2 -c64 -d20s --latency -s deploy/bench/webhook.lua http://127.0.0.1:8080/webhooks/telecmi
local counter = 0
local templates = {
  '{"type":"event","direction":"inbound","conversation_uuid":"%s","cmiuuid":"%s","from":"440000000000","app_id":2222223,"time":1634724624830,"to":"440000000001","custom":"{\\"crm\\": \\"true\\"}","status":"answered"}',
  '{"leg":"b","type":"event","team":"Sales_2222223","user":"204_2222223","conversation_uuid":"%s","cmiuuid":"%s-b","direction":"outbound","from":"440000000000","app_id":2222223,"time":1634724629956,"custom":"{\\"crm\\": \\"true\\"}","status":"hangup"}',
  '{"virtual_number":440000000000,"custom":"{\\"key\\":\\"value\\"}","appid":2222223,"type":"cdr","direction":"inbound","cmiuuid":"%s","user":"204_2222223","status":"answered","to":440000000001,"from":440000000002,"time":1634720920615,"answeredsec":11,"team":"Sales_2222223","hangup_reason":"recv_bye","record":true,"filename":"1634720915260737218351_2222223.mp3","conversation_uuid":"%s"}',
}

request = function()
  counter = counter + 1
  local id = string.format("bench-%d-%d", math.random(1, 1000000000), counter)
  local body = string.format(templates[counter % #templates + 1], id, id)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
