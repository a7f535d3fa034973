#!/usr/bin/env bash
# The lab→alert figure alone: part 4 of bench-state.sh (labfeed through wardwatch up --redis --amqp).
# FEED_RATE, FEED_DURATION and FEED_SEED as there; see loadtest/README.md.
PARTS=labfeed exec "$(dirname "$0")/bench-state.sh" "$@"
