#!/usr/bin/env bash
# The summarization recipe with the saw_gdpo estimator; see run.sh for the environment variables.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" saw_gdpo "$@"
