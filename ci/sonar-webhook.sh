#!/usr/bin/env bash
# Point SonarQube's webhook at Jenkins, signed with a shared secret (docs/cicd.md):
# Jenkins' SonarQube plugin checks each callback's X-Sonar-Webhook-HMAC-SHA256
# against the credential that JCasC's `webhookSecretId` names (`sonarqube-webhook-secret`,
# from SONAR_WEBHOOK_SECRET) and refuses the rest, so nobody who can reach Jenkins
# can forge a passing quality gate.
#
#   ci/sonar-webhook.sh URL      # e.g. http://jenkins:8080/sonarqube-webhook/
#
# SONAR_HOST_URL, SONAR_TOKEN (an administrator's: webhooks are a global setting)
# and SONAR_WEBHOOK_SECRET come from the environment and reach curl as a config on
# stdin, never on a command line. Creates the global webhook `jenkins`, or updates
# it when it exists. Exit codes: 0 done, 1 the API refused, 2 usage.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 URL" >&2; exit 2; }
url=$1
: "${SONAR_HOST_URL:?}" "${SONAR_TOKEN:?}" "${SONAR_WEBHOOK_SECRET:?}"
# A value inside a curl config's double quotes: backslashes and quotes escaped.
q() { local v=${1//\\/\\\\}; printf '"%s"' "${v//\"/\\\"}"; }
api() { # PATH; further curl config lines on stdin
  { printf 'user = %s\n' "$(q "$SONAR_TOKEN:")"; cat; } | curl -sS --fail-with-body --config - "$SONAR_HOST_URL/api/$1"
}
key=$(api webhooks/list </dev/null | python3 -c '
import json, sys
print(next((w["key"] for w in json.load(sys.stdin)["webhooks"] if w["name"] == "jenkins"), ""))')
fields() {
  printf 'data-urlencode = %s\n' "$(q "name=jenkins")" "$(q "url=$url")" "$(q "secret=$SONAR_WEBHOOK_SECRET")"
}
if [ -n "$key" ]; then
  op=update
  out=$({ fields; printf 'data-urlencode = %s\n' "$(q "webhook=$key")"; } | api webhooks/update) || op=""
else
  op=create
  out=$(fields | api webhooks/create) || op=""
fi
[ -n "$op" ] || { echo "SonarQube refused the webhook: $out" >&2; exit 1; }
echo "${op}d SonarQube's webhook jenkins -> $url (signed)"
