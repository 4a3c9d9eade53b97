-- redis_exporter script (-script FILE): CAMPAIGN.STATUS as metrics.
--
-- redis_exporter runs this with EVAL on every scrape and exports each
-- name/value pair it returns as redis_script_values{key="<name>"} <value>.
-- Every numeric STATUS field becomes campaign_<field> ('-' turned into '_',
-- the names of INFO campaign); the two text fields become numbers:
--   campaign_database_connected      1 when `database` is connected, else 0
--   campaign_database_configured     0 when `database` is unconfigured
--   campaign_role_primary            1 on a primary, 0 on a replica
-- and campaign_last_error_set is 1 while `last-error` is not empty (the
-- text itself stays in STATUS and the Redis log).
local status = redis.call('CAMPAIGN.STATUS')
local out = {}
local function put(name, value)
    out[#out + 1] = name
    out[#out + 1] = string.format('%.0f', value)
end
for i = 1, #status, 2 do
    local field, value = status[i], status[i + 1]
    local name = 'campaign_' .. (string.gsub(field, '-', '_'))
    if type(value) == 'number' then
        put(name, value)
    elseif field == 'database' then
        put('campaign_database_connected', value == 'connected' and 1 or 0)
        put('campaign_database_configured', value == 'unconfigured' and 0 or 1)
    elseif field == 'role' then
        put('campaign_role_primary', value == 'primary' and 1 or 0)
    elseif field == 'last-error' then
        put('campaign_last_error_set', value == '' and 0 or 1)
    end
end
return out
