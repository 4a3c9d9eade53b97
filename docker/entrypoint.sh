#!/bin/sh
# Starts redis-server with the module: copies /opt/redis-campaign/redis.conf
# to /run/redis-campaign/redis.conf, appends one campaign.<setting> line per
# CAMPAIGN_<SETTING> environment variable (CAMPAIGN_DATABASE_URL ->
# campaign.database-url), and runs redis-server on it with the arguments
# given. A first argument that is not an option is run as the command.
set -eu

case "${1:-}" in
    '' | -*) ;;
    *) exec "$@" ;;
esac

conf=/run/redis-campaign/redis.conf
cp /opt/redis-campaign/redis.conf "$conf"
chmod 600 "$conf"
env | while IFS='=' read -r name value; do
    case "$name" in
        CAMPAIGN_[A-Z]*) ;;
        *) continue ;;
    esac
    setting="$(printf '%s' "${name#CAMPAIGN_}" | tr 'A-Z_' 'a-z-')"
    # redis.conf quoting: backslashes and double quotes escaped.
    quoted="$(printf '%s' "$value" | sed 's/\\/\\\\/g; s/"/\\"/g')"
    printf 'campaign.%s "%s"\n' "$setting" "$quoted" >>"$conf"
done
exec redis-server "$conf" "$@"
