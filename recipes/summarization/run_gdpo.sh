#!/usr/bin/env bash
# The summarization recipe with the gdpo estimator; see run.sh for the environment variables.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" gdpo "$@"
