#!/bin/bash
# The check helpers of the installer test scripts (sourced): `check DESCRIPTION COMMAND...` runs
# the command and counts it as passed, or stops the script with FAIL.
PASS=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; exit 1; }
check() { # description, command...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
