#!/usr/bin/env bash
# The tool-calling recipe with the gdpo estimator; see run.sh for the environment variables.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" gdpo "$@"
