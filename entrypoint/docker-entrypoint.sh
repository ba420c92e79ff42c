#!/bin/sh
# For an image whose ENTRYPOINT must stay a script: `exec` hands PID 1 to roadie, which runs
# /docker-entrypoint.d/* (ROADIE_HOOKS moves it), then the CMD with its arguments intact.
exec roadie --hooks "${ROADIE_HOOKS:-/docker-entrypoint.d}" -- "$@"
